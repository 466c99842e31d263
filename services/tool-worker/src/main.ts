import { connectNats, createLogger, names, runUntilSignal } from "@smallchain/shared";
import { startToolWorker } from "./tool-worker.js";

const log = createLogger("tool-worker");
await runUntilSignal(log, async () => {
  const nc = await connectNats("smallchain-tool-worker");
  const service = await startToolWorker({
    nc,
    names: names(process.env.SC_PREFIX),
    log,
    ...(process.env.SC_TOOL_ACK_WAIT_MS && { ackWaitMs: Number(process.env.SC_TOOL_ACK_WAIT_MS) }),
    ...(process.env.SC_PUBLIC_URL && { publicUrl: process.env.SC_PUBLIC_URL }),
  });
  return { nc, service };
});
