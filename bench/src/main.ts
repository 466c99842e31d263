import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { names, runRequested } from "@smallchain/shared";
import { startFakeOpenAI, turnOf, type FakeOpenAI } from "../../test/support/fake-openai.js";
import { rawChain, type ChainResult } from "./raw-chain.js";
import { Observer, applyConfig, benchConfig, cleanup, measureStarts, measureSteps, startServices, type Llm, type Mode, type StepResult } from "./smallchain.js";
import { round, summarize } from "./stats.js";
import { cpuMeter, natsServerPid } from "./cpu.js";

const natsPid = natsServerPid();

const STEPS = 10;
const url = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const quick = process.argv.includes("--quick");
const BACKLOG = quick ? 1000 : 10_000;
/** Runs measured (and, before that, run to warm up) at 1: 300 steps, as many as the raw chain makes there. */
const C1_RUNS = quick ? 10 : 30;
/** Runs through the pool of 64. */
const C64_RUNS = quick ? 128 : 384;
const log = (line: string) => process.stderr.write(`${line}\n`);

function prefix(label: string): string {
  return `b${label}${Math.random().toString(36).slice(2, 7)}`;
}

/** CPU ms per step at c64, per process (the NATS server's too when it runs on this machine). */
type CpuPerStep = Record<string, number>;
/** `cpuMsPerStepC1`: at concurrency 1 every message is its own wake-up, and a step costs several times its c64 CPU. */
type Raw = { c1: ChainResult; c64: ChainResult; cpuMsPerStep: CpuPerStep; cpuMsPerStepC1: CpuPerStep };
type Scenario = {
  mode: Mode;
  llm: Llm;
  c1: StepResult;
  c64: StepResult;
  rssMb: Record<string, number>;
  cpuMsPerStep: CpuPerStep;
  cpuMsPerStepC1: CpuPerStep;
  raw: Raw;
};

/** The raw chain at 1 and at 64 (64 chains of 60 steps, all at once). */
async function rawPair(nc: NatsConnection): Promise<Raw> {
  const p = prefix("r");
  const meter1 = cpuMeter({ bench: process.pid, "nats-server": natsPid });
  const c1 = await rawChain(nc, p, 1, quick ? 100 : 300, 1);
  const cpuMsPerStepC1 = meter1()(c1.steps);
  const meter = cpuMeter({ bench: process.pid, "nats-server": natsPid });
  const c64 = await rawChain(nc, `${p}x`, 64, quick ? 20 : 60, 64);
  return { c1, c64, cpuMsPerStep: meter()(c64.steps), cpuMsPerStepC1 };
}

/**
 * One deployment and llm at 1 and at 64 runs, each measurement right after the raw chain's: this machine's
 * speed drifts by tens of percent within minutes, so each ratio compares figures taken seconds apart.
 */
async function scenario(nc: NatsConnection, mode: Mode, llm: Llm, fake: FakeOpenAI): Promise<Scenario> {
  const p = prefix("s");
  const inst = await startServices(nc, p, mode, { OPENAI_API_KEY: "bench" });
  const obs = new Observer(nc, p);
  try {
    await applyConfig(inst.client, benchConfig(llm, STEPS, fake.url));
    // Warm-up: as much as the measurement itself, at 1 and at 64. A fresh service process spends about 1.5x the
    // CPU per step in its first few thousand steps (V8 has not compiled its hot paths yet): with only 160 steps
    // of warm-up, its first pool of 64 ran at 1,176 steps/s and the next five at 1,790-1,960
    // (bench/tools/warmup.mjs). The raw chain is warmed just as much (main).
    await measureSteps(inst, obs, 1, C1_RUNS, STEPS);
    await measureSteps(inst, obs, 64, C64_RUNS, STEPS);
    const raw = await rawPair(nc);
    const pids = { ...inst.pids(), ...(mode === "processes" && { bench: process.pid }), "nats-server": natsPid };
    const meter1 = cpuMeter(pids);
    const c1 = await measureSteps(inst, obs, 1, C1_RUNS, STEPS);
    const cpuMsPerStepC1 = meter1()(c1.steps);
    const meter = cpuMeter(pids);
    const c64 = await measureSteps(inst, obs, 64, C64_RUNS, STEPS);
    const cpuMsPerStep = meter()(c64.steps);
    const rssMb = inst.rss();
    log(`  raw chain just before: c1 p50 ${raw.c1.latencyMs.p50} ms, c64 ${raw.c64.steadyStepsPerSecond} steps/s, CPU ms per step at c64 ${JSON.stringify(raw.cpuMsPerStep)}`);
    log(
      `  ${mode}/${llm}: c1 p50 ${c1.latencyMs.p50} ms, c64 ${c64.steadyStepsPerSecond} steps/s (${c64.stepsPerSecond} over the whole pool), CPU ms per step at c64 ${JSON.stringify(cpuMsPerStep)}`,
    );
    return { mode, llm, c1, c64, rssMb, cpuMsPerStep, cpuMsPerStepC1, raw };
  } finally {
    obs.close();
    await inst.stop();
    await cleanup(nc, p);
  }
}

async function main() {
  const nc = await connect({ servers: url });
  const fake = await startFakeOpenAI((req) => {
    const turns = turnOf(req);
    return turns < STEPS ? { toolCalls: [{ name: "add", arguments: { a: 1, b: 2 } }] } : { content: "done" };
  });
  const t0 = performance.now();
  const results: Record<string, unknown> = { at: new Date().toISOString(), nats: url, stepsPerRun: STEPS };

  // The raw chain warms up as Smallchain does (its code is JIT-compiled in this process, its streams are
  // new): cold, its first 300 steps at c1 took 2.2 ms each (p50), warm 1.0-1.2 ms.
  log("warming up the raw JetStream chain...");
  for (let i = 0; i < 3; i++) await rawPair(nc);
  log("smallchain, each deployment right after the raw JetStream chain (the baseline)...");
  const scenarios: Scenario[] = [];
  const order = (process.env.BENCH_ORDER?.split(",").map((s) => s.split(":")) as [Mode, Llm][] | undefined) ?? ([["processes", "mock"], ["processes", "openai"], ["in-process", "mock"]] as const);
  for (const [mode, llm] of order) {
    scenarios.push(await scenario(nc, mode, llm, fake));
  }
  results.smallchain = scenarios;
  // BENCH_ORDER may leave out or reorder deployments: the headline is the services as processes, on the mock.
  const main = scenarios.find((s) => s.mode === "processes" && s.llm === "mock") ?? scenarios[0]!;
  const dev = scenarios.find((s) => s.mode === "in-process" && s.llm === "mock");
  results.raw = main.raw;

  log("runs started per second, a 200-step run, and a backlog...");
  const p = prefix("x");
  const inst = await startServices(nc, p, "processes");
  const obs = new Observer(nc, p);
  await applyConfig(inst.client, benchConfig("mock", 200));
  const starts = await measureStarts(inst, obs, quick ? 300 : 1000);
  const long = await inst.client.startRun({ task: "steps" });
  await obs.done(long.runId);
  const d = obs.stepDurations(long.runId);
  const flat = { steps: d.length, first10: summarize(d.slice(1, 11)), last10: summarize(d.slice(-10)) };
  await inst.stop();

  // The backlog is requested while no service runs, then drained by all of them.
  const n = names(p);
  const t = Date.now();
  const backlogIds: string[] = [];
  const { EventStore } = await import("@smallchain/shared");
  const store = await EventStore.open(nc, n);
  const { pool } = await import("./stats.js");
  await pool(BACKLOG, 256, async (i) => {
    const id = `rbacklog${i}`;
    backlogIds.push(id);
    await store.append(runRequested(id, t, { agent: "answerer", task: "quick", input: "go" }), 0);
  });
  const drainStart = performance.now();
  const inst2 = await startServices(nc, p, "processes");
  const peak: Record<string, number> = {};
  const sampler = setInterval(() => {
    for (const [k, v] of Object.entries(inst2.rss())) peak[k] = Math.max(peak[k] ?? 0, v);
  }, 250);
  await Promise.all(backlogIds.map((id) => obs.done(id)));
  const drainSeconds = (performance.now() - drainStart) / 1000;
  clearInterval(sampler);
  // get runs with every run in place
  await new Promise((r) => setTimeout(r, 500));
  const g0 = performance.now();
  const firstPage = await inst2.client.listRuns({ limit: 500 });
  const getRunsMs = performance.now() - g0;
  const a0 = performance.now();
  const all = await inst2.client.listRuns();
  const allRunsMs = performance.now() - a0;
  // What `smallchain get runs` does: a new process, a connection, the first page.
  const c0 = performance.now();
  const cli = spawnSync(process.execPath, [new URL("../../../../packages/cli/bin/smallchain.js", import.meta.url).pathname, "--prefix", p, "get", "runs"], { encoding: "utf8" });
  const cliMs = performance.now() - c0;
  const page = all.runs;
  const pageSize = firstPage.runs.length;
  obs.close();
  await inst2.stop();
  await cleanup(nc, p);
  results.starts = starts;
  results.longRun = flat;
  results.backlog = { runs: BACKLOG, drainSeconds: round(drainSeconds), runsPerSecond: Math.round(BACKLOG / drainSeconds), peakRssMb: peak, getRuns: { pageMs: round(getRunsMs), pageSize, allMs: round(allRunsMs), all: page.length, cliMs: round(cliMs), cliLines: cli.stdout.split("\n").length - 1 } };

  // Each against the raw chain measured just before it; throughput while 64 runs (chains) were in flight.
  const ratiosOf = (s: Scenario) => ({
    throughputC64: round(s.c64.steadyStepsPerSecond / s.raw.c64.steadyStepsPerSecond),
    latencyP50C1: round(s.c1.latencyMs.p50 / s.raw.c1.latencyMs.p50),
  });
  results.ratios = {
    ...ratiosOf(main),
    // The raw chain runs its driver and worker in one process: `smallchain dev` is the like-for-like deployment.
    ...(dev && { inProcess: ratiosOf(dev) }),
    targets: { throughputC64: ">= 0.5", latencyP50C1: "<= 2" },
  };
  results.seconds = round((performance.now() - t0) / 1000, 1);

  const rawRow = (r: Raw, label: string) => [label, "", r.c1.latencyMs.p50, r.c1.latencyMs.p99, r.c1.stepsPerSecond, r.c64.steadyStepsPerSecond, r.c64.latencyMs.p50, r.c64.latencyMs.p99];
  const rows = scenarios.flatMap((s) => [
    rawRow(s.raw, "  raw chain (just before)"),
    [`smallchain ${s.mode}`, s.llm, s.c1.latencyMs.p50, s.c1.latencyMs.p99, s.c1.stepsPerSecond, s.c64.steadyStepsPerSecond, s.c64.latencyMs.p50, s.c64.latencyMs.p99],
  ]);
  const head = ["", "llm", "c1 p50 ms", "c1 p99 ms", "c1 steps/s", "c64 steps/s", "c64 p50 ms", "c64 p99 ms"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) => r.map((v, i) => String(v).padEnd(widths[i]!)).join("  ");
  console.log(`\n${line(head)}\n${rows.map(line).join("\n")}\n(c64 steps/s: while 64 runs or chains were in flight)\n`);
  for (const s of scenarios) {
    const r = ratiosOf(s);
    console.log(`ratios (smallchain ${s.mode}/${s.llm} vs raw): throughput at 64 = ${r.throughputC64} (target >= 0.5), p50 latency at 1 = ${r.latencyP50C1} (target <= 2)`);
  }
  console.log(`runs started: ${starts.runsStartedPerSecond}/s; 200-step run: step p50 first 10 ${flat.first10.p50} ms, last 10 ${flat.last10.p50} ms`);
  console.log(`backlog of ${BACKLOG}: drained in ${round(drainSeconds, 1)} s, peak RSS MB ${JSON.stringify(peak)}; get runs: a page of ${pageSize} in ${round(getRunsMs, 0)} ms, all ${page.length} in ${round(allRunsMs, 0)} ms, the CLI process (first page of 500) ${round(cliMs, 0)} ms`);
  console.log(`CPU ms per step at c64: ${scenarios.map((s) => `raw ${JSON.stringify(s.raw.cpuMsPerStep)}, then ${s.mode}/${s.llm} ${JSON.stringify(s.cpuMsPerStep)}`).join("; ")}`);
  console.log(`CPU ms per step at c1: ${scenarios.map((s) => `raw ${JSON.stringify(s.raw.cpuMsPerStepC1)}, then ${s.mode}/${s.llm} ${JSON.stringify(s.cpuMsPerStepC1)}`).join("; ")}`);
  console.log(`service RSS MB after the steps scenarios: ${scenarios.map((s) => `${s.mode}/${s.llm} ${JSON.stringify(s.rssMb)}`).join("; ")}`);
  writeFileSync(new URL("../../../results.json", import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
  console.log(`bench/results.json written (${results.seconds} s)`);
  await fake.close();
  await nc.close();
}

await main();
