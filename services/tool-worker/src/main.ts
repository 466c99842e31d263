import { connectNats, createLogger, names, runUntilSignal, serveMetricsFromEnv } from "@smallchain/shared";
import { startToolWorker } from "./tool-worker.js";

const log = createLogger("tool-worker");
await runUntilSignal(log, async () => {
  const nc = await connectNats("smallchain-tool-worker");
  const served = await serveMetricsFromEnv("tool-worker", nc, log);
  const service = await startToolWorker({
    nc,
    names: names(process.env.SC_PREFIX),
    log,
    metrics: served?.metrics,
    ...(process.env.SC_PUBLIC_URL && { publicUrl: process.env.SC_PUBLIC_URL }),
  });
  return { nc, service, metrics: served?.server };
});
