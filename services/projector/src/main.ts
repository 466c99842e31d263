import { connectNats, createLogger, names, runUntilSignal } from "@smallchain/shared";
import { startProjector } from "./projector.js";

const log = createLogger("projector");
await runUntilSignal(log, async () => {
  const nc = await connectNats("smallchain-projector");
  const service = await startProjector({ nc, names: names(process.env.SC_PREFIX), log });
  return { nc, service };
});
