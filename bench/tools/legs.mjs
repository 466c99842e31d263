// Where a step's time goes at concurrency 1: median gap between consecutive events of a run, by transition,
// from JetStream's own store timestamps (ns), with its p90, p99 and max. node bench/tools/legs.mjs [processes|in-process] [runs]
// BENCH_LLM=openai runs the agent through the openai SDK against the fake server (in a process of its own).
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { decode, RunEvent, names } from "@smallchain/shared";
import { Observer, applyConfig, benchConfig, cleanup, measureSteps, startServices } from "../dist/bench/src/smallchain.js";
import { startFakeOpenAIProcess } from "../dist/bench/src/fake-openai-process.js";

/** ns since the epoch from an RFC 3339 timestamp with up to 9 fraction digits. */
function nanos(ts) {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(ts);
  return Date.parse(`${m[1]}Z`) * 1e6 + Number((m[2] ?? "").padEnd(9, "0"));
}

const [mode = "processes", count = "20"] = process.argv.slice(2);
const prefix = `blegs${Math.random().toString(36).slice(2, 7)}`;
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const inst = await startServices(nc, prefix, mode);
const llm = process.env.BENCH_LLM ?? "mock";
const fake = llm === "openai" ? await startFakeOpenAIProcess(10) : undefined;
await applyConfig(inst.client, benchConfig(llm, 10, fake?.url));
const obs = new Observer(nc, prefix);
// Warm-up, as in the bench: fresh processes run their first few thousand steps before V8 has compiled them.
await measureSteps(inst, obs, 64, 384, 10);
const ids = [];
for (let i = 0; i < Number(count); i++) {
  const { runId } = await inst.client.startRun({ task: "steps" });
  await obs.done(runId);
  ids.push(runId);
}
const jsm = await jetstreamManager(nc);
const n = names(prefix);
const gaps = new Map();
for (const id of ids.slice(2)) {
  let prev;
  for (let seq = 1; ; ) {
    const sm = await jsm.direct.getMessage(n.eventsStream, { seq, next_by_subj: n.runEventsSubject(id) });
    if (!sm) break;
    seq = sm.seq + 1;
    const e = decode(RunEvent, sm.data, "event");
    const tns = nanos(sm.timestamp);
    if (prev) {
      const k = `${prev.type} -> ${e.type}`;
      const l = gaps.get(k) ?? [];
      l.push((tns - prev.tns) / 1e6);
      gaps.set(k, l);
    }
    prev = { type: e.type, tns };
  }
}
for (const [k, l] of gaps) {
  l.sort((a, b) => a - b);
  const at = (q) => l[Math.min(l.length - 1, Math.floor(l.length * q))].toFixed(3);
  console.log(`${k.padEnd(45)} n=${String(l.length).padStart(4)} p50 ${at(0.5)} ms, p90 ${at(0.9)}, p99 ${at(0.99)}, max ${l.at(-1).toFixed(3)}`);
}
obs.close();
await inst.stop();
fake?.stop();
await cleanup(nc, prefix);
await nc.close();
