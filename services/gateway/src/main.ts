import { connectNats, createLogger, names, runUntilSignal, serveMetricsFromEnv } from "@smallchain/shared";
import { startGateway } from "./gateway.js";

const log = createLogger("gateway");
await runUntilSignal(log, async () => {
  const token = process.env.SC_GATEWAY_TOKEN;
  if (!token) throw new Error("SC_GATEWAY_TOKEN is not set: the HTTP gateway refuses to start without a bearer token");
  const nc = await connectNats("smallchain-gateway");
  const served = await serveMetricsFromEnv("gateway", nc, log);
  const service = await startGateway({
    nc,
    names: names(process.env.SC_PREFIX),
    log,
    token,
    port: Number(process.env.SC_GATEWAY_PORT ?? 8080),
    host: process.env.SC_GATEWAY_HOST ?? "0.0.0.0",
  });
  return { nc, service, metrics: served?.server };
});
