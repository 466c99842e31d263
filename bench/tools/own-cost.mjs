// Smallchain's own cost at concurrency 1: the four service processes against the design's floor with its workers as
// processes, in alternating rounds (the floor's 100 steps, then 10 runs of 10 steps), after a warm-up of both.
// Prints the pooled p50 of each and their ratio. node bench/tools/own-cost.mjs [rounds] [processes|in-process]
// OWN_COST_EXTRA_OBSERVERS=n adds n observers like the bench's (each on a connection of its own), to see what it costs.
import { connect } from "@nats-io/transport-node";
import { DESIGN, RawWorkerProcesses, rawChain } from "../dist/bench/src/raw-chain.js";
import { Observer, applyConfig, benchConfig, cleanup, measureSteps, quiesce, startServices } from "../dist/bench/src/smallchain.js";
import { summarize } from "../dist/bench/src/stats.js";

const rounds = Number(process.argv[2] ?? 10);
const mode = process.argv[3] ?? "processes";
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const id = (l) => `b${l}${Math.random().toString(36).slice(2, 7)}`;
const workers = await RawWorkerProcesses.start(nc);
const floorOpts = { ...DESIGN, workers };
const prefix = id("oc");
const inst = await startServices(nc, prefix, mode);
await applyConfig(inst.client, benchConfig("mock", 10));
const obs = new Observer(nc, prefix);
const extra = await Promise.all(
  Array.from({ length: Number(process.env.OWN_COST_EXTRA_OBSERVERS ?? 0) }, async () => {
    const c = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
    return { c, o: new Observer(c, prefix) };
  }),
);
await rawChain(nc, id("f"), 1, 300, 1, floorOpts);
await rawChain(nc, id("f"), 64, 60, 64, floorOpts);
await measureSteps(inst, obs, 1, 30, 10);
await measureSteps(inst, obs, 64, 384, 10);
const floor = [];
const smallchain = [];
const each = [];
for (let r = 0; r < rounds; r++) {
  await quiesce(nc, prefix);
  const f = await rawChain(nc, id("f"), 1, 100, 1, floorOpts);
  await quiesce(nc, prefix);
  const s = await measureSteps(inst, obs, 1, 10, 10);
  floor.push(...f.samples.latencies);
  smallchain.push(...s.samples.latencies);
  each.push((s.latencyMs.p50 / f.latencyMs.p50).toFixed(2));
}
const f50 = summarize(floor).p50;
const s50 = summarize(smallchain).p50;
console.log(`${extra.length ? `(${extra.length} more observers) ` : ""}${mode} c1 p50 ${s50} ms, the floor with its workers as processes ${f50} ms: ${(s50 / f50).toFixed(3)}x (rounds: ${each.join(" ")})`);
obs.close();
for (const { c, o } of extra) (o.close(), await c.close());
await inst.stop();
await workers.stop();
await cleanup(nc, prefix);
await nc.close();
