// Is the raw chain slower next to an idle installation, and if so, because of its processes (paused here) or of the server's state?
// Alternates raw rounds with the installation idle and with its processes paused (SIGSTOP), and counts the
// NATS server's context switches per raw step. node bench/tools/raw-pause.mjs [processes|in-process] [pairs]
import { readFileSync, readdirSync } from "node:fs";
import { execSync } from "node:child_process";
import { connect } from "@nats-io/transport-node";
import { rawChain } from "../dist/bench/src/raw-chain.js";
import { Observer, applyConfig, benchConfig, cleanup, measureSteps, quiesce, startServices } from "../dist/bench/src/smallchain.js";

const mode = process.argv[2] ?? "processes";
const pairs = Number(process.argv[3] ?? 4);
const serverPid = Number(execSync("pgrep -o nats-server").toString().trim());
const switches = () => {
  let v = 0, nv = 0;
  for (const t of readdirSync(`/proc/${serverPid}/task`)) {
    try {
      const s = readFileSync(`/proc/${serverPid}/task/${t}/status`, "utf8");
      v += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)[1]);
      nv += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)[1]);
    } catch {}
  }
  return { v, nv };
};
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const id = () => `braw${Math.random().toString(36).slice(2, 7)}`;
const raw = async (label) => {
  const s0 = switches();
  const c1 = await rawChain(nc, id(), 1, 200, 1);
  const s1 = switches();
  const c64 = await rawChain(nc, id(), 64, 30, 64);
  const s2 = switches();
  const per = (a, b, steps) => `${((b.v - a.v) / steps).toFixed(1)}v+${((b.nv - a.nv) / steps).toFixed(1)}nv`;
  console.log(`${label.padEnd(30)} c1 p50 ${c1.latencyMs.p50.toFixed(3)} ms (${per(s0, s1, 200)}/step)  c64 ${c64.steadyStepsPerSecond} steps/s (${per(s1, s2, 64 * 30)}/step)`);
  return { c1: c1.latencyMs.p50, c64: c64.steadyStepsPerSecond };
};
const idle = async (ms) => {
  const s0 = switches();
  await new Promise((r) => setTimeout(r, ms));
  const s1 = switches();
  return `${Math.round(((s1.v - s0.v) * 1000) / ms)}v/s`;
};
for (let i = 0; i < 3; i++) await raw("warm-up, alone");
console.log(`server idle, alone: ${await idle(2000)}`);
const alone = [await raw("alone"), await raw("alone")];
const prefix = `bps${Math.random().toString(36).slice(2, 7)}`;
const inst = await startServices(nc, prefix, mode);
await applyConfig(inst.client, benchConfig("mock", 10));
const obs = new Observer(nc, prefix);
await measureSteps(inst, obs, 64, 384, 10);
await quiesce(nc, prefix);
const pids = Object.values(inst.pids()).filter(Boolean);
const signal = (sig) => pids.forEach((p) => process.kill(p, sig));
const res = { idle: [], paused: [] };
for (let i = 0; i < pairs; i++) {
  await measureSteps(inst, obs, 64, 128, 10);
  await quiesce(nc, prefix);
  console.log(`server, installation idle: ${await idle(1000)}`);
  res.idle.push(await raw("installation idle"));
  signal("SIGSTOP");
  console.log(`server, installation paused: ${await idle(1000)}`);
  res.paused.push(await raw("installation paused"));
  signal("SIGCONT");
}
obs.close();
await inst.stop();
const after = [await raw("services stopped"), await raw("services stopped")];
await cleanup(nc, prefix);
const med = (a, k) => a.map((x) => x[k]).sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const [k, v] of Object.entries({ alone, ...res, after })) console.log(`${k.padEnd(8)} median c1 p50 ${med(v, "c1").toFixed(3)} ms, c64 ${med(v, "c64")} steps/s`);
await nc.close();
