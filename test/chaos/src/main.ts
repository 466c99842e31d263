import { assertChaosHeld, formatReport, runChaos } from "./chaos.js";

// `npm run chaos`: the full-size chaos run. CHAOS_RUNS, CHAOS_SECONDS and NATS_URL change its size and server;
// SC_SCHEDULER_PROJECTS=1 runs it with schedulers that project the views, and no projector.
const runs = Number(process.env.CHAOS_RUNS ?? 200);
const seconds = Number(process.env.CHAOS_SECONDS ?? 30);
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

const write = (line: string) => process.stdout.write(`${line}\n`);
const report = await runChaos({ natsUrl, runs, chaosMs: seconds * 1000, killEveryMs: [150, 500], settleTimeoutMs: 120_000, schedulerProjects: process.env.SC_SCHEDULER_PROJECTS === "1", log: write });
write(formatReport(report));
try {
  assertChaosHeld(report, runs);
  write("chaos: every guarantee held");
} catch (err) {
  write((err as Error).message);
  process.exitCode = 1;
}
