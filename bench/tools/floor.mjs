// The raw chain with and without a decision: before each command the driver appends a decision event to the chain's
// subject, guarded by its last sequence, and publishes the command once that is stored (as Smallchain's scheduler
// does). Alternating rounds at concurrency 1: node bench/tools/floor.mjs [rounds] [steps]
import { connect } from "@nats-io/transport-node";
import { AckPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { encode, decode } from "@smallchain/shared";
import { z } from "zod";

const [rounds = "5", stepsArg = "300"] = process.argv.slice(2);
const Msg = z.object({ chain: z.number(), step: z.number(), kind: z.string(), body: z.string() });
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const jsm = await jetstreamManager(nc);
const js = jetstream(nc);
const prefix = `bfloor${Math.random().toString(36).slice(2, 7)}`;
const up = prefix.toUpperCase();
await jsm.streams.add({ name: `${up}_CMD`, subjects: [`${prefix}.cmd.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
await jsm.streams.add({ name: `${up}_EV`, subjects: [`${prefix}.ev.*`], storage: StorageType.File });
await jsm.consumers.add(`${up}_CMD`, { durable_name: "worker", ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 });
await jsm.consumers.add(`${up}_EV`, { durable_name: "driver", ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 });
const worker = await (await js.consumers.get(`${up}_CMD`, "worker")).consume({ max_messages: 512 });
void (async () => {
  for await (const m of worker) {
    const cmd = decode(Msg, m.data, "cmd");
    void js.publish(`${prefix}.ev.${cmd.chain}`, encode({ ...cmd, kind: `${cmd.kind}-done` }), { msgID: `${cmd.chain}:${cmd.step}:${cmd.kind}` }).then(() => m.ack());
  }
})();
const waiters = new Map();
const driver = await (await js.consumers.get(`${up}_EV`, "driver")).consume({ max_messages: 512 });
void (async () => {
  for await (const m of driver) {
    const e = decode(Msg, m.data, "event");
    m.ack();
    if (e.kind.endsWith("-done")) waiters.get(e.chain)?.(m.seq);
  }
})();
let chainNo = 0;
async function chain(steps, decisions) {
  const c = ++chainNo;
  let last = 0;
  const send = async (step, kind) => {
    const done = new Promise((r) => waiters.set(c, r));
    if (decisions) {
      const ack = await js.publish(`${prefix}.ev.${c}`, encode({ chain: c, step, kind: `${kind}-decided`, body: "x".repeat(64) }), { msgID: `${c}:${step}:${kind}:d`, expect: { lastSubjectSequence: last } });
      last = ack.seq;
    }
    await js.publish(`${prefix}.cmd.${kind}`, encode({ chain: c, step, kind, body: "x".repeat(64) }), { msgID: `${c}:${step}:${kind}:cmd` });
    last = await done;
  };
  const lat = [];
  for (let step = 1; step <= steps; step++) {
    const t = performance.now();
    await send(step, "llm");
    await send(step, "tool");
    lat.push(performance.now() - t);
  }
  lat.sort((a, b) => a - b);
  return lat[Math.floor(lat.length / 2)];
}
await chain(2000, false);
await chain(2000, true);
for (let r = 0; r < Number(rounds); r++) {
  const a = await chain(Number(stepsArg), false);
  const b = await chain(Number(stepsArg), true);
  console.log(`raw p50 ${a.toFixed(3)} ms, with decisions ${b.toFixed(3)} ms: ratio ${(b / a).toFixed(2)}`);
}
await worker.close();
await driver.close();
await jsm.streams.delete(`${up}_CMD`);
await jsm.streams.delete(`${up}_EV`);
await nc.close();
