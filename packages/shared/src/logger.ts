import { pino, type Logger } from "pino";

export type { Logger };

/** One pino logger per service; LOG_LEVEL sets the level, LOG_PRETTY=1 prints for humans (needs pino-pretty). */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  const pretty = process.env.LOG_PRETTY === "1";
  return pino({
    name: service,
    level,
    base: { service },
    // Never log secrets even if someone passes a whole config or env object.
    redact: { paths: ["*.apiKey", "*.api_key", "*.authorization", "*.password", "*.token"], censor: "[redacted]" },
    ...(pretty && { transport: { target: "pino-pretty", options: { colorize: true } } }),
  });
}
