import { connectNats, createLogger, names, runUntilSignal, serveMetricsFromEnv } from "@smallchain/shared";
import { startProjector } from "./projector.js";

const log = createLogger("projector");
await runUntilSignal(log, async () => {
  const nc = await connectNats("smallchain-projector");
  const served = await serveMetricsFromEnv("projector", nc, log);
  const service = await startProjector({ nc, names: names(process.env.SC_PREFIX), log, metrics: served?.metrics });
  return { nc, service, metrics: served?.server };
});
