import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { MetricsServer } from "./metrics/server.js";
import { flushAcks } from "./nats/batch.js";
import { initTracing } from "./tracing.js";

export type Service = { stop(): Promise<void> };

/** A started service process: its connection, the service, and where it serves metrics if it does. */
export type Running = { nc: NatsConnection; service: Service; metrics?: MetricsServer | undefined };

/**
 * Runs a service process until SIGTERM/SIGINT: then it stops pulling, lets in-flight work finish
 * (or be redelivered), drains the connection and exits. A failure to start exits non-zero.
 */
export async function runUntilSignal(
  log: Logger,
  start: () => Promise<Running>,
): Promise<void> {
  // Traces go out when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT); the logger names the service.
  const service = (log.bindings() as { service?: string }).service ?? "service";
  const tracing = await initTracing(service);
  if (tracing) log.info("sending traces to the OTLP endpoint");
  let running: Running;
  try {
    running = await start();
  } catch (err) {
    log.fatal({ err }, "failed to start");
    process.exit(1);
  }
  const { nc, metrics } = running;
  void nc.closed().then((err) => {
    if (err) log.error({ err }, "NATS connection closed with an error");
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    try {
      await running.service.stop();
      // Acks held back for a send to ride along with go now.
      flushAcks();
      await nc.drain();
      await metrics?.close();
      await tracing?.shutdown();
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
