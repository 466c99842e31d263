// Times a projector process folding a whole installation's events from scratch (views, context, index purged):
//   node bench/tools/reproject.mjs <prefix> [node flags...]
import { spawn } from "node:child_process";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { names } from "@smallchain/shared";

const [prefix = "bcli", ...nodeArgs] = process.argv.slice(2);
const n = names(prefix);
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const jsm = await jetstreamManager(nc);
await jsm.consumers.delete(n.eventsStream, n.consumers.projector).catch(() => {});
for (const s of [`KV_${n.runsBucket}`, n.runIndexStream]) await jsm.streams.purge(s).catch(() => {});
const total = (await jsm.streams.info(n.eventsStream)).state.messages;
const t0 = performance.now();
const child = spawn(process.execPath, [...nodeArgs, new URL("../../services/projector/dist/main.js", import.meta.url).pathname], {
  env: { ...process.env, SC_PREFIX: prefix, LOG_LEVEL: "warn" },
  stdio: "inherit",
});
for (;;) {
  await new Promise((r) => setTimeout(r, 100));
  const c = await jsm.consumers.info(n.eventsStream, n.consumers.projector).catch(() => undefined);
  if (c && c.num_pending === 0 && c.num_ack_pending === 0 && c.ack_floor.stream_seq > 0) break;
}
const s = (performance.now() - t0) / 1000;
console.log(`${total} events projected in ${s.toFixed(2)} s: ${Math.round(total / s)} events/s`);
child.kill("SIGTERM");
await new Promise((r) => child.once("exit", r));
await nc.close();
