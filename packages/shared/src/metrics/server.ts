import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { createMetrics, type Metrics } from "./metrics.js";

export type NatsHealth = "connected" | "disconnected" | "closed";

export type MetricsServerOptions = {
  metrics: Metrics;
  /** Names the process in /healthz, e.g. "scheduler" or "dev". */
  service: string;
  nc: NatsConnection;
  /** 0 picks a free port (see `port` of the result). */
  port: number;
  host?: string;
};

export type MetricsServer = {
  readonly port: number;
  close(): Promise<void>;
};

/**
 * Serves `GET /metrics` (Prometheus text format) and `GET /healthz`: 200 `{status:"ok", service, nats:"connected"}`
 * while the NATS connection is up, else 503 with `status:"unavailable"` and what the connection is doing.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { registry } = opts.metrics;
  let nats: NatsHealth = opts.nc.isClosed() ? "closed" : "connected";
  void (async () => {
    for await (const s of opts.nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnecting") nats = "disconnected";
      else if (s.type === "reconnect") nats = "connected";
      else if (s.type === "close") nats = "closed";
    }
  })();
  void opts.nc.closed().then(() => {
    nats = "closed";
  });

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/healthz") {
      const state = opts.nc.isClosed() ? "closed" : nats;
      const ok = state === "connected";
      res
        .writeHead(ok ? 200 : 503, { "content-type": "application/json" })
        .end(JSON.stringify({ status: ok ? "ok" : "unavailable", service: opts.service, nats: state }));
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(String(err)),
      );
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics or /healthz\n");
  });
  // A scraper holding a keep-alive connection must not keep close() waiting.
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** Where metrics are served from the environment: SC_METRICS_PORT (unset: not served), SC_METRICS_HOST. */
export function metricsPortFromEnv(env: NodeJS.ProcessEnv = process.env): { port: number; host?: string } | undefined {
  const raw = env.SC_METRICS_PORT?.trim();
  if (raw === undefined || raw === "") return undefined;
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65535) {
    throw new Error(`SC_METRICS_PORT must be a port number from 0 to 65535 (0: any free port), got "${env.SC_METRICS_PORT}"`);
  }
  const host = env.SC_METRICS_HOST?.trim();
  return { port, ...(host && { host }) };
}

export type ServedMetrics = { metrics: Metrics; server: MetricsServer };

/**
 * Creates this process's metrics and serves them when SC_METRICS_PORT is set (containers set it; a laptop's
 * `smallchain dev` does not need it); undefined when it is not set. A bad value is an error that says so.
 */
export async function serveMetricsFromEnv(
  service: string,
  nc: NatsConnection,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ServedMetrics | undefined> {
  const where = metricsPortFromEnv(env);
  if (!where) return undefined;
  const metrics = createMetrics();
  const server = await startMetricsServer({ metrics, service, nc, ...where });
  log.info({ port: server.port }, "serving /metrics and /healthz");
  return { metrics, server };
}
