import { connectNats, createLogger, names, runUntilSignal } from "@smallchain/shared";
import { startScheduler } from "./scheduler.js";


const log = createLogger("scheduler");
await runUntilSignal(log, async () => {
  const nc = await connectNats("smallchain-scheduler");
  const service = await startScheduler({ nc, names: names(process.env.SC_PREFIX), log });
  return { nc, service };
});
