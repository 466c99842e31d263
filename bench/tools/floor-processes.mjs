// The raw chain and the design's floor with the workers in the bench process and in two worker processes of their
// own (as Smallchain's four processes), in rounds. With them (session 10): the floor of a protocol whose guarded
// decision is the command, read by the workers from the events stream; its cost were each kind's decisions on a subject
// of their own, as NATS 2.11 would allow; and the design's floor with the tool decision appended by the LLM worker
// after its result. Session 11: every decision on a subject of decisions of its own, guarded by it, the results on
// another, the workers reading the decisions only. Session 15: that protocol with a driver that does not get its own
// decisions back. node bench/tools/floor-processes.mjs [rounds] [variants]
import { connect } from "@nats-io/transport-node";
import { DESIGN, RawWorkerProcesses, rawChain } from "../dist/bench/src/raw-chain.js";

const rounds = Number(process.argv[2] ?? 3);
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const workers = await RawWorkerProcesses.start(nc);
const id = () => `bfp${Math.random().toString(36).slice(2, 7)}`;
const all = {
  raw: {},
  // The design's protocol before session 12 (a guarded decision, then a command on a work queue).
  floor: { decisions: true },
  "raw, worker processes": { workers },
  "floor, worker processes": { decisions: true, workers },
  "decision=command": { decisionsAsCommands: true },
  "decision=command, w. proc.": { decisionsAsCommands: true, workers },
  "by kind subject, w. proc.": { decisionsAsCommands: "by-subject", workers },
  // The design's protocol in sessions 12-17.
  "decision subject": { decisionsAsCommands: "decision-subject" },
  "decision subject, w. proc.": { decisionsAsCommands: "decision-subject", workers },
  // Session 15: the same, but the driver reads the results only (not its own decisions back).
  "decision subject, no echo, w. proc.": { decisionsAsCommands: "decision-subject", driverReadsResultsOnly: true, workers },
  // The design's protocol since session 18 (the lanes: "by kind subject" above), and the bench's floor.
  "lanes (the design)": DESIGN,
  "tool decided by worker, w. proc.": { decisions: true, toolDecidedByWorker: true, workers },
};
// A second argument keeps only the variants whose names match it (a regular expression), with the raw chain.
const only = process.argv[3] ? new RegExp(process.argv[3]) : undefined;
const variants = Object.fromEntries(Object.entries(all).filter(([name]) => name === "raw" || !only || only.test(name)));
for (const opts of Object.values(variants)) {
  await rawChain(nc, id(), 1, 300, 1, opts);
  await rawChain(nc, id(), 64, 60, 64, opts);
}
const got = Object.fromEntries(Object.keys(variants).map((k) => [k, { c1: [], c64: [] }]));
for (let r = 0; r < rounds; r++) {
  const line = [];
  for (const [name, opts] of Object.entries(variants)) {
    const c1 = await rawChain(nc, id(), 1, 100, 1, opts);
    const c64 = await rawChain(nc, id(), 64, 30, 64, opts);
    got[name].c1.push(c1.latencyMs.p50);
    got[name].c64.push(c64.steadyStepsPerSecond);
    line.push(`${name}: ${c1.latencyMs.p50.toFixed(2)} ms, ${c64.steadyStepsPerSecond}/s`);
  }
  console.log(`round ${r + 1}: ${line.join("; ")}`);
}
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
for (const [name, g] of Object.entries(got)) {
  console.log(`${name.padEnd(26)} c1 p50 ${mean(g.c1).toFixed(3)} ms (${(mean(g.c1) / mean(got.raw.c1)).toFixed(2)}x raw), c64 ${Math.round(mean(g.c64))} steps/s (${(mean(g.c64) / mean(got.raw.c64)).toFixed(2)}x raw)`);
}
await workers.stop();
await nc.close();
