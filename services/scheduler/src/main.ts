import { connectNats, createLogger, names, runUntilSignal, serveMetricsFromEnv } from "@smallchain/shared";
import { startScheduler } from "./scheduler.js";

const log = createLogger("scheduler");
await runUntilSignal(log, async () => {
  const nc = await connectNats("smallchain-scheduler");
  const served = await serveMetricsFromEnv("scheduler", nc, log);
  const service = await startScheduler({ nc, names: names(process.env.SC_PREFIX), log, metrics: served?.metrics });
  return { nc, service, metrics: served?.server };
});
