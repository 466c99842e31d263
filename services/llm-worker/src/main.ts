import { connectNats, createLogger, names, runUntilSignal, serveMetricsFromEnv } from "@smallchain/shared";
import { startLlmWorker } from "./llm-worker.js";

const log = createLogger("llm-worker");
await runUntilSignal(log, async () => {
  const nc = await connectNats("smallchain-llm-worker");
  const served = await serveMetricsFromEnv("llm-worker", nc, log);
  const service = await startLlmWorker({
    nc,
    names: names(process.env.SC_PREFIX),
    log,
    metrics: served?.metrics,
  });
  return { nc, service, metrics: served?.server };
});
