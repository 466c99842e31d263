// A/B: two installations of the same deployment side by side, measured alternately (A then B, then B then A, ...),
// each round at 64 (a pool of 192 runs) and at 1 (10 runs), after a warm-up of both. The machine's speed drifts by
// tens of percent within seconds, so only figures taken together compare: this pools each side's rounds and prints
// B over A. node bench/tools/ab.mjs [rounds] [processes|in-process] [runs at 64]
// AB_A_ENV / AB_B_ENV: JSON of environment variables for each side's services (e.g. '{"SC_PROJECTOR_PULL_MS":"20"}');
// they are also set in this process while it provisions that side's streams and consumers (a setting that changes a
// consumer's filter must create it so: on NATS 2.9 a consumer whose filter was changed by an update stopped delivering).
// AB_A_ARGS / AB_B_ARGS: node flags for them; AB_A_SKIP / AB_B_SKIP: services left out (as BENCH_SKIP); AB_WHICH=1 or AB_WHICH=64 measures only that concurrency.
// A side against itself (no variables) shows the noise: B/A 1.039 at 1 in session 14's one such run (16 rounds).
import { connect } from "@nats-io/transport-node";
import { Observer, applyConfig, benchConfig, cleanup, measureSteps, quiesce, startServices } from "../dist/bench/src/smallchain.js";
import { pooled } from "../dist/bench/src/stats.js";

const rounds = Number(process.argv[2] ?? 12);
const mode = process.argv[3] ?? "processes";
const runsAt64 = Number(process.argv[4] ?? 192);
const which = (process.env.AB_WHICH ?? "64,1").split(",");
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const sides = {};
for (const k of ["A", "B"]) {
  process.env.BENCH_NODE_ARGS = process.env[`AB_${k}_ARGS`] ?? "";
  process.env.BENCH_SKIP = process.env[`AB_${k}_SKIP`] ?? "";
  const prefix = `bab${k.toLowerCase()}${Math.random().toString(36).slice(2, 7)}`;
  const sideEnv = JSON.parse(process.env[`AB_${k}_ENV`] ?? "{}");
  const saved = { ...process.env };
  Object.assign(process.env, sideEnv);
  const inst = await startServices(nc, prefix, mode, sideEnv);
  for (const key of Object.keys(sideEnv)) if (saved[key] === undefined) delete process.env[key]; else process.env[key] = saved[key];
  await applyConfig(inst.client, benchConfig("mock", 10));
  sides[k] = { inst, obs: new Observer(nc, prefix), prefix, c64: [], c1: [] };
}
// Warm-up, as in the bench: fresh processes run their first few thousand steps before V8 has compiled them.
for (const { inst, obs } of Object.values(sides)) {
  await measureSteps(inst, obs, 64, 384, 10);
  await measureSteps(inst, obs, 1, 30, 10);
}
for (let r = 0; r < rounds; r++) {
  const line = [];
  for (const k of r % 2 ? ["B", "A"] : ["A", "B"]) {
    const s = sides[k];
    if (which.includes("64")) {
      await quiesce(nc, s.prefix);
      const m = await measureSteps(s.inst, s.obs, 64, runsAt64, 10);
      s.c64.push(m.samples);
      line.push(`${k} c64 ${m.steadyStepsPerSecond} steps/s`);
    }
    if (which.includes("1")) {
      await quiesce(nc, s.prefix);
      const m = await measureSteps(s.inst, s.obs, 1, 10, 10);
      s.c1.push(m.samples);
      line.push(`${k} c1 p50 ${m.latencyMs.p50} ms`);
    }
  }
  console.log(`round ${r + 1}: ${line.join(", ")}`);
}
const figures = (s) => ({
  c64: s.c64.length > 0 ? pooled(s.c64).steadyStepsPerSecond : undefined,
  p50: s.c1.length > 0 ? pooled(s.c1).latencyMs.p50 : undefined,
});
const a = figures(sides.A);
const b = figures(sides.B);
const ratio = (x, y) => (x !== undefined && y !== undefined ? (y / x).toFixed(3) : "-");
console.log(`${mode}: A ${JSON.stringify(a)}, B ${JSON.stringify(b)}; B/A steps/s at 64 ${ratio(a.c64, b.c64)}, p50 at 1 ${ratio(a.p50, b.p50)}`);
for (const s of Object.values(sides)) {
  s.obs.close();
  await s.inst.stop();
  await cleanup(nc, s.prefix);
}
await nc.close();
