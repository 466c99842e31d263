/**
 * The raw chain's worker in a process of its own (`RawWorkerProcesses`): pulls the commands of one kind, appends
 * each one's event to the chain's subject and acks, as the in-process worker does. It lives across chains, so
 * that it warms up as the services do: a request on `<control>.attach` (the chain's prefix) starts pulling that
 * chain's commands (`<prefix> decisions`: its decisions, from the events stream; `<prefix> tool-decision`: an LLM
 * command's result followed by the tool decision), one on `<control>.detach` stops. node raw-worker.js <control> <kind>;
 * prints "ready".
 */
import { connect } from "@nats-io/transport-node";
import { jetstream, type ConsumerMessages } from "@nats-io/jetstream";
import { serveRawCommands, serveRawDecisions } from "./raw-chain.js";

const [control = "", kind = ""] = process.argv.slice(2);
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const js = jetstream(nc);
let current: ConsumerMessages | undefined;

nc.subscribe(`${control}.attach`, {
  callback: (_err, req) => {
    void (async () => {
      const [prefix = "", mode] = req.string().split(" ");
      try {
        current =
          mode === "decisions"
            ? await serveRawDecisions(js, prefix, kind as "llm" | "tool")
            : await serveRawCommands(js, prefix, `worker-${kind}`, undefined, mode === "tool-decision");
      } catch (err) {
        req.respond((err as Error).message);
        return;
      }
      req.respond("ok");
    })();
  },
});
nc.subscribe(`${control}.detach`, {
  callback: (_err, req) => void (current?.close() ?? Promise.resolve()).then(() => req.respond("ok")),
});
await nc.flush();
process.on("SIGTERM", () => void nc.close().then(() => process.exit(0)));
console.log("ready");
