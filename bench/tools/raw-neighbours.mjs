// How the raw chain fares next to a Smallchain installation: alone, right after a pool of runs, after a pause, and
// after the installation's consumers have nothing pending; then after its services stop, and after its streams go. node bench/tools/raw-neighbours.mjs [processes|in-process]
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { names } from "@smallchain/shared";
import { rawChain } from "../dist/bench/src/raw-chain.js";
import { Observer, applyConfig, benchConfig, cleanup, measureSteps, startServices } from "../dist/bench/src/smallchain.js";

const mode = process.argv[2] ?? "processes";
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const id = () => `braw${Math.random().toString(36).slice(2, 7)}`;
const raw = async (label) => {
  const c1 = await rawChain(nc, id(), 1, 100, 1);
  const c64 = await rawChain(nc, id(), 64, 30, 64);
  console.log(`${label.padEnd(48)} raw c1 p50 ${c1.latencyMs.p50} ms, c64 ${c64.steadyStepsPerSecond} steps/s`);
};
for (let i = 0; i < 3; i++) await raw("warm-up, alone");
await raw("alone");
const prefix = `bnb${Math.random().toString(36).slice(2, 7)}`;
const inst = await startServices(nc, prefix, mode);
await applyConfig(inst.client, benchConfig("mock", 10));
const obs = new Observer(nc, prefix);
await measureSteps(inst, obs, 64, 384, 10);
const jsm = await jetstreamManager(nc);
const n = names(prefix);
const pending = async () => {
  let total = 0;
  for await (const c of jsm.consumers.list(n.eventsStream)) total += c.num_pending + c.num_ack_pending;
  return total;
};
for (let round = 0; round < 2; round++) {
  await measureSteps(inst, obs, 64, 192, 10);
  console.log(`  events still pending or unacked after the pool: ${await pending()}`);
  await raw("right after a pool of 192 runs at 64");
  await new Promise((r) => setTimeout(r, 3000));
  await raw("3 s later");
  await measureSteps(inst, obs, 64, 192, 10);
  const t = performance.now();
  while ((await pending()) > 0) await new Promise((r) => setTimeout(r, 50));
  console.log(`  waited ${Math.round(performance.now() - t)} ms for nothing pending`);
  await raw("after a pool, once nothing is pending");
}
obs.close();
await raw("services idle, the bench's observer closed");
await raw("services idle, the bench's observer closed");
await inst.stop();
await raw("services stopped, their streams kept");
await raw("services stopped, their streams kept");
await cleanup(nc, prefix);
await raw("streams deleted too");
await raw("streams deleted too");
await nc.close();
