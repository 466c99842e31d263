import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, type ConnectionOptions, type Msg, type NatsConnection } from "@nats-io/transport-node";

export type { NatsConnection, Msg };
export { headers } from "@nats-io/transport-node";

/**
 * Connection settings from the standard environment: NATS_URL (comma-separated servers), NATS_CREDS (a .creds file),
 * NATS_USER/NATS_PASS, NATS_TOKEN, NATS_CA/NATS_CERT/NATS_KEY for TLS.
 */
export function connectionOptions(name: string, env: NodeJS.ProcessEnv = process.env): ConnectionOptions {
  const opts: ConnectionOptions = {
    servers: (env.NATS_URL ?? "nats://127.0.0.1:4222").split(",").map((s) => s.trim()),
    name,
    // Long-lived services ride out server restarts instead of dying with them.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: false,
  };
  if (env.NATS_CREDS) opts.authenticator = credsAuthenticator(readFileSync(env.NATS_CREDS));
  if (env.NATS_USER) {
    opts.user = env.NATS_USER;
    if (env.NATS_PASS !== undefined) opts.pass = env.NATS_PASS;
  }
  if (env.NATS_TOKEN) opts.token = env.NATS_TOKEN;
  if (env.NATS_CA || env.NATS_CERT) {
    opts.tls = {
      ...(env.NATS_CA && { caFile: env.NATS_CA }),
      ...(env.NATS_CERT && { certFile: env.NATS_CERT }),
      ...(env.NATS_KEY && { keyFile: env.NATS_KEY }),
    };
  }
  return opts;
}

export async function connectNats(name: string, overrides: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  const opts = { ...connectionOptions(name), ...overrides };
  try {
    return await connect(opts);
  } catch (err) {
    throw new Error(`cannot connect to NATS at ${String(opts.servers)}: ${(err as Error).message}`, { cause: err });
  }
}
