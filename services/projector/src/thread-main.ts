// The projector's worker thread (see thread.ts): its own NATS connection and logger; its metrics go to the main thread.
import { parentPort, workerData } from "node:worker_threads";
import { connectNats, createLogger, flushAcks, names, relayMetrics } from "@smallchain/shared";
import { startProjector } from "./projector.js";
import type { FromThread, ProjectorThreadData, ToThread } from "./thread.js";

const data = workerData as ProjectorThreadData;
const port = parentPort!;
const send = (m: FromThread) => port.postMessage(m);
const log = createLogger("dev", data.logLevel).child({ service: "projector" });
const metrics = data.metrics ? relayMetrics((batch) => send({ kind: "metrics", batch })) : undefined;

try {
  const nc = await connectNats("smallchain-dev-projector", { servers: data.servers });
  const service = await startProjector({ nc, names: names(data.prefix), log, metrics });
  port.once("message", (m: ToThread) => {
    if (m.kind !== "stop") return;
    void (async () => {
      try {
        await service.stop();
        flushAcks();
        await nc.drain();
      } catch (err) {
        log.warn({ err }, "stopping the projector");
      }
      metrics?.flush();
      process.exit(0);
    })();
  });
  send({ kind: "started" });
} catch (err) {
  send({ kind: "failed", error: (err as Error).message });
  process.exit(1);
}
