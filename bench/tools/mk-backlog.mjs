// Leaves an installation with N finished runs under a prefix, for timing the CLI by hand:
//   node bench/tools/mk-backlog.mjs <prefix> [N]
import { connect } from "@nats-io/transport-node";
import { EventStore, names, runRequested } from "@smallchain/shared";
import { Observer, applyConfig, benchConfig, startServices } from "../dist/bench/src/smallchain.js";
import { pool } from "../dist/bench/src/stats.js";

const [prefix = "bcli", count = "11000"] = process.argv.slice(2);
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const inst = await startServices(nc, prefix, "processes");
await applyConfig(inst.client, benchConfig("mock", 10));
const obs = new Observer(nc, prefix);
const store = await EventStore.open(nc, names(prefix));
const ids = [];
const t = Date.now();
await pool(Number(count), 256, async (i) => {
  const id = `rbacklog${i}`;
  ids.push(id);
  await store.append(runRequested(id, t, { agent: "answerer", task: "quick", input: "go" }), 0);
});
await Promise.all(ids.map((id) => obs.done(id)));
obs.close();
await inst.stop();
await nc.close();
console.log(`${count} runs under ${prefix}`);
