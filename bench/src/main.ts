import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { names, runRequested } from "@smallchain/shared";
import { startFakeOpenAIProcess, type FakeOpenAIProcess } from "./fake-openai-process.js";
import { DESIGN, RawWorkerProcesses, rawChain, type ChainResult } from "./raw-chain.js";
import { rawOpenAICall } from "./raw-llm.js";
import { Observer, applyConfig, benchConfig, cleanup, measureStarts, measureSteps, quiesce, startServices, type Llm, type Mode, type StepResult } from "./smallchain.js";
import { pooled, round, summarize, type Summary } from "./stats.js";
import { cpuMeter, natsServerPid } from "./cpu.js";

const natsPid = natsServerPid();

const STEPS = 10;
const url = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const quick = process.argv.includes("--quick");
const BACKLOG = quick ? 1000 : 10_000;
/**
 * Each deployment is measured in rounds, each round the raw chain and then the deployment, seconds apart: this
 * machine's speed drifts by tens of percent within seconds (at 1 a step's CPU and its latency rise and fall
 * together, in every process at once), so figures taken minutes apart compare two machines. The rounds are
 * pooled: at 1, eight rounds of 10 runs (100 steps) against 100 raw steps (a round takes about a second, and one
 * round's own ratio spreads by ±15%); at 64, five rounds of 192 runs through the pool of 64 against 64 raw chains of
 * 30 steps (one round's ratio spread by ±20% in session 16: three rounds, until then, left a run's pooled ratio
 * 10% either side of the next run's). More rounds narrow the spread of the pooled ratio, not where it centres.
 */
const ROUNDS = quick ? 3 : 5;
const C1_ROUNDS = quick ? 3 : 8;
const C1_RUNS_PER_ROUND = quick ? 5 : 10;
const C64_RUNS_PER_ROUND = quick ? 128 : 192;
const RAW_C64_STEPS_PER_ROUND = quick ? 20 : 30;
/** Warm-up of each deployment at 1 (300 steps, as the raw chain's); and a full pool at 64. */
const C1_RUNS = 3 * C1_RUNS_PER_ROUND;
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
  /** The ratios of each round on its own (the headline ratios are of the pooled rounds). */
  roundRatios: { throughputC64: number[]; latencyP50C1: number[] };
  /**
   * The services as processes on the mock only: the design's floor with its workers as processes, in the same rounds
   * (after the raw chain, before the deployment); its ratios to the raw chain, and the deployment's to it.
   */
  topologyFloor?: { c1: ChainResult; c64: ChainResult; overRaw: Ratios; deploymentOverIt: Ratios };
  /**
   * The openai deployments only: the raw chain whose worker makes the same LLM call (the llm-worker's provider
   * against the same fake server) for each LLM command, in the same rounds (after the raw chain, before the
   * deployment); its ratios to the raw chain, and the deployment's to it: the orchestration's cost with the
   * client's cost on both sides.
   */
  rawWithClient?: { c1: ChainResult; c64: ChainResult; cpuMsPerStep: CpuPerStep; cpuMsPerStepC1: CpuPerStep; overRaw: Ratios; deploymentOverIt: Ratios };
};

/** CPU of named processes summed over several measurements, per step of all of them. */
function cpuTotals() {
  const ms: Record<string, number> = {};
  let steps = 0;
  return {
    async measure<T extends { steps: number }>(pids: Record<string, number | undefined>, run: () => Promise<T>): Promise<T> {
      const meter = cpuMeter(pids);
      const result = await run();
      for (const [k, v] of Object.entries(meter()(1))) ms[k] = (ms[k] ?? 0) + v;
      steps += result.steps;
      return result;
    },
    perStep: (): CpuPerStep => Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, round(v / steps)])),
  };
}

type CpuTotals = ReturnType<typeof cpuTotals>;

function pooledChain(rounds: ChainResult[]): ChainResult {
  return { concurrency: rounds[0]!.concurrency, ...pooled(rounds.map((r) => r.samples!)) };
}

function pooledSteps(rounds: StepResult[]): StepResult {
  return { concurrency: rounds[0]!.concurrency, runs: rounds.reduce((a, r) => a + r.runs, 0), ...pooled(rounds.map((r) => r.samples!)) };
}

/** A pass of the raw chain at 1 and at 64 (64 chains of 60 steps, all at once), to warm it up. */
async function rawPass(nc: NatsConnection): Promise<void> {
  await rawChain(nc, prefix("r"), 1, quick ? 100 : 300, 1);
  await rawChain(nc, prefix("r"), 64, quick ? 20 : 60, 64);
}

type Measured = { steadyStepsPerSecond: number; latencyMs: Summary };
type Ratios = { throughputC64: number; latencyP50C1: number };
/** Steps/s while 64 were in flight, as a multiple of the baseline's (higher is better). */
const throughputRatio = (x: Measured, base: Measured) => round(x.steadyStepsPerSecond / base.steadyStepsPerSecond);
/** p50 latency at 1, as a multiple of the baseline's (lower is better). */
const latencyRatio = (x: Measured, base: Measured) => round(x.latencyMs.p50 / base.latencyMs.p50);
const ratiosOf = (x: { c1: Measured; c64: Measured }, base: { c1: Measured; c64: Measured }): Ratios => ({
  throughputC64: throughputRatio(x.c64, base.c64),
  latencyP50C1: latencyRatio(x.c1, base.c1),
});

type FloorFigures = { c1: ChainResult; c64: ChainResult; ratios: Ratios; roundRatios: { throughputC64: number[]; latencyP50C1: number[] } };
/** The floor with its workers in the bench process, the raw chain of the same rounds, and `processes`: the floor again with its workers in processes of their own. */
type Floor = FloorFigures & { raw: { c1: ChainResult; c64: ChainResult }; processes: FloorFigures };

/**
 * The floor of the design on this server: the raw chain whose every command is a decision stored on the chain's
 * subject of decisions, guarded by that subject's last sequence, read by the workers (each acks the other kind's
 * unread), with the results on another subject (rawChain's `decisionsAsCommands: "decision-subject"`, the protocol
 * built in session 12), measured in rounds with the raw chain as the deployments are. No implementation of
 * Smallchain's protocol on NATS 2.9 can do better than these ratios; what a deployment adds beyond them is its own.
 * (Until session 13 this was the floor of the protocol before it: a guarded decision, then a command on a work queue.)
 * The floor is measured twice in each round: with the raw chain's worker in the bench process, and with an LLM
 * worker and a tool worker in processes of their own, as the four services run (a step then wakes three
 * processes, not one): what the second adds is the price of that topology, not of Smallchain's code.
 */
async function designFloor(nc: NatsConnection, workers: RawWorkerProcesses): Promise<Floor> {
  const asProcesses = { ...DESIGN, workers };
  for (const opts of [DESIGN, asProcesses]) {
    await rawChain(nc, prefix("f"), 1, quick ? 100 : 300, 1, opts);
    await rawChain(nc, prefix("f"), 64, quick ? 20 : 60, 64, opts);
  }
  /** `count` rounds at a concurrency, each the raw chain, then the floor in one process, then with worker processes. */
  const inRounds = async (count: number, concurrency: number, stepsPerChain: number) => {
    const rounds: Record<"raw" | "floor" | "proc", ChainResult>[] = [];
    for (let r = 0; r < count; r++) {
      const raw = await rawChain(nc, prefix("r"), concurrency, stepsPerChain, concurrency);
      const floor = await rawChain(nc, prefix("f"), concurrency, stepsPerChain, concurrency, DESIGN);
      const proc = await rawChain(nc, prefix("f"), concurrency, stepsPerChain, concurrency, asProcesses);
      rounds.push({ raw, floor, proc });
    }
    return rounds;
  };
  const rounds1 = await inRounds(C1_ROUNDS, 1, C1_RUNS_PER_ROUND * STEPS);
  const rounds64 = await inRounds(ROUNDS, 64, RAW_C64_STEPS_PER_ROUND);
  const raw = { c1: pooledChain(rounds1.map((r) => r.raw)), c64: pooledChain(rounds64.map((r) => r.raw)) };
  const figures = (variant: "floor" | "proc"): FloorFigures => {
    const c1 = pooledChain(rounds1.map((r) => r[variant]));
    const c64 = pooledChain(rounds64.map((r) => r[variant]));
    return {
      c1,
      c64,
      ratios: ratiosOf({ c1, c64 }, raw),
      roundRatios: {
        throughputC64: rounds64.map((r) => throughputRatio(r[variant], r.raw)),
        latencyP50C1: rounds1.map((r) => latencyRatio(r[variant], r.raw)),
      },
    };
  };
  return { ...figures("floor"), raw, processes: figures("proc") };
}

/**
 * One deployment and llm at 1 and at 64 runs, in rounds that each measure the raw chain and then the deployment
 * (see ROUNDS and C1_ROUNDS): each ratio compares figures taken seconds apart, pooled over the rounds.
 */
async function scenario(nc: NatsConnection, mode: Mode, llm: Llm, fake: FakeOpenAIProcess, workers: RawWorkerProcesses): Promise<Scenario> {
  const p = prefix("s");
  const inst = await startServices(nc, p, mode, { OPENAI_API_KEY: "bench" });
  const obs = new Observer(nc, p);
  try {
    await applyConfig(inst.client, benchConfig(llm, STEPS, fake.url));
    // The fake server's CPU is the model's, not the client's: counted apart, where the deployment calls it.
    const fakePid = llm === "openai" ? { "fake-openai": fake.pid } : {};
    const rawPids = { bench: process.pid, "nats-server": natsPid };
    const pids = { ...inst.pids(), bench: process.pid, "nats-server": natsPid, ...fakePid };
    const cpu = { raw1: cpuTotals(), raw64: cpuTotals(), client1: cpuTotals(), client64: cpuTotals(), c1: cpuTotals(), c64: cpuTotals() };
    // Smallchain's own cost beyond its protocol and its topology: the floor with its workers as processes, measured
    // in the same rounds (the services as processes on the mock only: a like-for-like floor for the others is not built).
    const withTopologyFloor = mode !== "in-process" && llm === "mock";
    // Its cost beyond the raw chain when the raw chain makes the same LLM call: the openai deployments.
    const clientCall = llm === "openai" ? rawOpenAICall(fake.url, STEPS) : undefined;
    type RawOpts = { decisionsAsCommands?: typeof DESIGN.decisionsAsCommands; workers?: RawWorkerProcesses; llm?: typeof clientCall };
    // Warm-up: as much as the measurement itself, at 1 and at 64. A fresh service process spends about 1.5x the
    // CPU per step in its first few thousand steps (V8 has not compiled its hot paths yet): with only 160 steps
    // of warm-up, its first pool of 64 ran at 1,176 steps/s and the next five at 1,790-1,960
    // (bench/tools/warmup.mjs). The raw chain is warmed just as much (main).
    await measureSteps(inst, obs, 1, C1_RUNS, STEPS);
    await measureSteps(inst, obs, 64, C64_RUNS, STEPS);
    // The raw chain with the client is warmed up as much (cold, the SDK's first calls in this process cost several
    // times a warm call; the first round at 1 ran at 2.9x the raw chain, the others at 1.5x).
    if (clientCall) {
      await rawChain(nc, prefix("r"), 1, C1_RUNS * STEPS, 1, { llm: clientCall });
      await rawChain(nc, prefix("r"), 64, quick ? 20 : 60, 64, { llm: clientCall });
    }
    /**
     * Rounds of the raw chain (then the topology floor or the raw chain with the same client, where measured) and
     * then the deployment, the CPU of the raw chain, of the raw chain with the client, and of the deployment counted.
     */
    const inRounds = async (
      count: number,
      raw: (opts?: RawOpts) => Promise<ChainResult>,
      rawCpu: CpuTotals,
      clientCpu: CpuTotals,
      smallchain: () => Promise<StepResult>,
      smallchainCpu: CpuTotals,
    ) => {
      const rounds: { raw: ChainResult; floor?: ChainResult; withClient?: ChainResult; smallchain: StepResult }[] = [];
      for (let r = 0; r < count; r++) {
        // Each measured with the cores to itself: the deployment idle (its projector caught up), the raw chain gone.
        await quiesce(nc, p);
        const rawRound = await rawCpu.measure(rawPids, () => raw());
        const floor = withTopologyFloor ? await raw({ ...DESIGN, workers }) : undefined;
        const withClient = clientCall
          ? await clientCpu.measure({ ...rawPids, ...fakePid }, () => raw({ llm: clientCall }))
          : undefined;
        await quiesce(nc, p);
        rounds.push({ raw: rawRound, ...(floor && { floor }), ...(withClient && { withClient }), smallchain: await smallchainCpu.measure(pids, smallchain) });
      }
      return rounds;
    };
    const c1Rounds = await inRounds(
      C1_ROUNDS,
      (opts) => rawChain(nc, prefix("r"), 1, C1_RUNS_PER_ROUND * STEPS, 1, opts),
      cpu.raw1,
      cpu.client1,
      () => measureSteps(inst, obs, 1, C1_RUNS_PER_ROUND, STEPS),
      cpu.c1,
    );
    const c64Rounds = await inRounds(
      ROUNDS,
      (opts) => rawChain(nc, prefix("r"), 64, RAW_C64_STEPS_PER_ROUND, 64, opts),
      cpu.raw64,
      cpu.client64,
      () => measureSteps(inst, obs, 64, C64_RUNS_PER_ROUND, STEPS),
      cpu.c64,
    );
    const rssMb = inst.rss();
    const raw: Raw = {
      c1: pooledChain(c1Rounds.map((r) => r.raw)),
      c64: pooledChain(c64Rounds.map((r) => r.raw)),
      cpuMsPerStep: cpu.raw64.perStep(),
      cpuMsPerStepC1: cpu.raw1.perStep(),
    };
    const c1 = pooledSteps(c1Rounds.map((r) => r.smallchain));
    const c64 = pooledSteps(c64Rounds.map((r) => r.smallchain));
    const roundRatios = {
      throughputC64: c64Rounds.map((r) => throughputRatio(r.smallchain, r.raw)),
      latencyP50C1: c1Rounds.map((r) => latencyRatio(r.smallchain, r.raw)),
    };
    /** A chain measured in the same rounds (the topology floor, the raw chain with the client), pooled: its ratios to the raw chain, and the deployment's to it. */
    const alongside = (key: "floor" | "withClient") => {
      const chain = { c1: pooledChain(c1Rounds.map((r) => r[key]!)), c64: pooledChain(c64Rounds.map((r) => r[key]!)) };
      return { ...chain, overRaw: ratiosOf(chain, raw), deploymentOverIt: ratiosOf({ c1, c64 }, chain) };
    };
    const topologyFloor = withTopologyFloor ? alongside("floor") : undefined;
    const rawWithClient = clientCall
      ? { ...alongside("withClient"), cpuMsPerStep: cpu.client64.perStep(), cpuMsPerStepC1: cpu.client1.perStep() }
      : undefined;
    const cpuMsPerStep = cpu.c64.perStep();
    log(`  raw chain, in the same rounds: c1 p50 ${raw.c1.latencyMs.p50} ms, c64 ${raw.c64.steadyStepsPerSecond} steps/s, CPU ms per step at c64 ${JSON.stringify(raw.cpuMsPerStep)}`);
    log(
      `  ${mode}/${llm}: c1 p50 ${c1.latencyMs.p50} ms, c64 ${c64.steadyStepsPerSecond} steps/s (${c64.stepsPerSecond} over the whole pools), CPU ms per step at c64 ${JSON.stringify(cpuMsPerStep)}`,
    );
    log(`    each round's ratio: c64 ${roundRatios.throughputC64.join(", ")}; c1 p50 ${roundRatios.latencyP50C1.join(", ")}`);
    if (topologyFloor) {
      const { c1: f1, c64: f64, overRaw, deploymentOverIt } = topologyFloor;
      log(
        `  the floor with its workers as processes, in the same rounds: c1 p50 ${f1.latencyMs.p50} ms (${overRaw.latencyP50C1}x raw), c64 ${f64.steadyStepsPerSecond} steps/s (${overRaw.throughputC64}x raw); ${mode}/${llm} over it: c1 p50 ${deploymentOverIt.latencyP50C1}x, c64 ${deploymentOverIt.throughputC64}x`,
      );
    }
    if (rawWithClient) {
      const { c1: w1, c64: w64, overRaw, deploymentOverIt } = rawWithClient;
      log(
        `  the raw chain making the same LLM call, in the same rounds: c1 p50 ${w1.latencyMs.p50} ms (${overRaw.latencyP50C1}x raw), c64 ${w64.steadyStepsPerSecond} steps/s (${overRaw.throughputC64}x raw), CPU ms per step at c64 ${JSON.stringify(rawWithClient.cpuMsPerStep)}; ${mode}/${llm} over it: c1 p50 ${deploymentOverIt.latencyP50C1}x, c64 ${deploymentOverIt.throughputC64}x`,
      );
    }
    return {
      mode,
      llm,
      c1,
      c64,
      rssMb,
      cpuMsPerStep,
      cpuMsPerStepC1: cpu.c1.perStep(),
      raw,
      roundRatios,
      ...(topologyFloor && { topologyFloor }),
      ...(rawWithClient && { rawWithClient }),
    };
  } finally {
    obs.close();
    await inst.stop();
    await cleanup(nc, p);
  }
}

async function main() {
  const nc = await connect({ servers: url });
  const fake = await startFakeOpenAIProcess(STEPS);
  const t0 = performance.now();
  const results: Record<string, unknown> = { at: new Date().toISOString(), nats: url, stepsPerRun: STEPS };

  // The raw chain warms up as Smallchain does (its code is JIT-compiled in this process, its streams are
  // new): cold, its first 300 steps at c1 took 2.2 ms each (p50), warm 1.0-1.2 ms.
  log("warming up the raw JetStream chain...");
  for (let i = 0; i < 3; i++) await rawPass(nc);
  log(`the design's floor: the raw chain whose commands are guarded decisions on a subject of their kind, in rounds with the raw chain (${C1_ROUNDS} at 1, ${ROUNDS} at 64)...`);
  // Two raw worker processes for the floor with its workers as processes, warmed up by the floor's rounds.
  const workers = await RawWorkerProcesses.start(nc);
  const floor = await designFloor(nc, workers);
  results.floor = floor;
  const logFloor = (label: string, f: FloorFigures) => {
    log(
      `  ${label}: c1 p50 ${f.c1.latencyMs.p50} ms against raw ${floor.raw.c1.latencyMs.p50} ms (${f.ratios.latencyP50C1}x); c64 ${f.c64.steadyStepsPerSecond} steps/s against ${floor.raw.c64.steadyStepsPerSecond} (${f.ratios.throughputC64}x)`,
    );
    log(`    each round's ratio: c64 ${f.roundRatios.throughputC64.join(", ")}; c1 p50 ${f.roundRatios.latencyP50C1.join(", ")}`);
  };
  logFloor("floor", floor);
  logFloor("with its workers as processes", floor.processes);
  log(`smallchain, each deployment in rounds of the raw JetStream chain (the baseline) and then the deployment (${C1_ROUNDS} at 1, ${ROUNDS} at 64)...`);
  const scenarios: Scenario[] = [];
  const order =
    (process.env.BENCH_ORDER?.split(",").map((s) => s.split(":")) as [Mode, Llm][] | undefined) ??
    ([["processes", "mock"], ["three-processes", "mock"], ["processes", "openai"], ["in-process", "mock"]] as const);
  for (const [mode, llm] of order) {
    scenarios.push(await scenario(nc, mode, llm, fake, workers));
  }
  await workers.stop();
  results.smallchain = scenarios;
  // BENCH_ORDER may leave out or reorder deployments: the headline is the services as processes, on the mock.
  const main = scenarios.find((s) => s.mode === "processes" && s.llm === "mock") ?? scenarios[0]!;
  const dev = scenarios.find((s) => s.mode === "in-process" && s.llm === "mock");
  const three = scenarios.find((s) => s.mode === "three-processes" && s.llm === "mock");
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

  // Each against the raw chain measured in the same rounds; throughput while 64 runs (chains) were in flight.
  const sameRounds = (s: Scenario) => ratiosOf(s, s.raw);
  const againstRawAlone = (s: Scenario) => ratiosOf(s, floor.raw);
  results.ratios = {
    ...sameRounds(main),
    // The raw chain runs its driver and worker in one process: `smallchain dev` is the like-for-like deployment.
    ...(dev && { inProcess: sameRounds(dev) }),
    // Three processes: the scheduler projects the views itself, no projector runs (SC_SCHEDULER_PROJECTS, session 17).
    ...(three && { threeProcesses: sameRounds(three), threeProcessesOverTheirFloor: three.topologyFloor?.deploymentOverIt }),
    targets: { throughputC64: ">= 0.5", latencyP50C1: "<= 2" },
    designFloor: floor.ratios,
    designFloorAsProcesses: floor.processes.ratios,
    // The four processes over the floor with its workers as processes, measured in their own rounds: Smallchain's
    // own cost beyond its protocol and its topology (1 = none).
    ...(main.topologyFloor && { processesOverTheirFloor: main.topologyFloor.deploymentOverIt }),
    // The same deployments against the raw chain of the floor's rounds, measured before any installation started
    // (a minute or more earlier, so with the machine's drift in it). Session 7's machine ran the raw chain 15-25%
    // slower next to an idle installation; session 8's did not (docs/performance.md).
    againstRawAlone: Object.fromEntries(scenarios.map((s) => [`${s.mode}/${s.llm}`, againstRawAlone(s)])),
    // The openai deployments against the raw chain whose worker makes the same LLM call, in the same rounds: the
    // orchestration's cost with the client's on both sides (the SDK's call costs as much CPU as the rest of a step).
    againstRawWithClient: Object.fromEntries(scenarios.flatMap((s) => (s.rawWithClient ? [[`${s.mode}/${s.llm}`, s.rawWithClient.deploymentOverIt]] : []))),
  };
  results.seconds = round((performance.now() - t0) / 1000, 1);

  const rawRow = (r: { c1: ChainResult; c64: ChainResult }, label: string) => [label, "", r.c1.latencyMs.p50, r.c1.latencyMs.p99, r.c1.stepsPerSecond, r.c64.steadyStepsPerSecond, r.c64.latencyMs.p50, r.c64.latencyMs.p99];
  const rows = scenarios.flatMap((s) => [
    rawRow(s.raw, "  raw chain (same rounds)"),
    ...(s.rawWithClient ? [rawRow(s.rawWithClient, "  raw chain + the same LLM call")] : []),
    [`smallchain ${s.mode}`, s.llm, s.c1.latencyMs.p50, s.c1.latencyMs.p99, s.c1.stepsPerSecond, s.c64.steadyStepsPerSecond, s.c64.latencyMs.p50, s.c64.latencyMs.p99],
  ]);
  const head = ["", "llm", "c1 p50 ms", "c1 p99 ms", "c1 steps/s", "c64 steps/s", "c64 p50 ms", "c64 p99 ms"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) => r.map((v, i) => String(v).padEnd(widths[i]!)).join("  ");
  console.log(`\n${line(head)}\n${rows.map(line).join("\n")}\n(c64 steps/s: while 64 runs or chains were in flight)\n`);
  for (const s of scenarios) {
    const r = sameRounds(s);
    console.log(`ratios (smallchain ${s.mode}/${s.llm} vs raw): throughput at 64 = ${r.throughputC64} (target >= 0.5), p50 latency at 1 = ${r.latencyP50C1} (target <= 2)`);
    if (s.rawWithClient) {
      const c = s.rawWithClient.deploymentOverIt;
      console.log(`ratios (smallchain ${s.mode}/${s.llm} vs the raw chain making the same LLM call): throughput at 64 = ${c.throughputC64} (target >= 0.5), p50 latency at 1 = ${c.latencyP50C1} (target <= 2)`);
    }
  }
  console.log(
    `the raw chain before any installation started (the floor's rounds): c1 p50 ${floor.raw.c1.latencyMs.p50} ms, c64 ${floor.raw.c64.steadyStepsPerSecond} steps/s; against it: ${scenarios
      .map((s) => {
        const r = againstRawAlone(s);
        return `${s.mode}/${s.llm} ${r.throughputC64} at 64, ${r.latencyP50C1} at 1`;
      })
      .join("; ")}`,
  );
  console.log(
    `the design's floor on this server (the raw chain's commands as guarded decisions on a subject of their kind, results on another): throughput at 64 = ${floor.ratios.throughputC64}, p50 latency at 1 = ${floor.ratios.latencyP50C1}; with its workers as processes: ${floor.processes.ratios.throughputC64} at 64, ${floor.processes.ratios.latencyP50C1} at 1`,
  );
  for (const s of scenarios) {
    const t = s.topologyFloor;
    if (!t) continue;
    console.log(
      `the floor with its workers as processes, in the rounds of ${s.mode}/${s.llm}: ${t.overRaw.throughputC64} at 64, ${t.overRaw.latencyP50C1} at 1; ${s.mode}/${s.llm} over it (Smallchain's own cost): throughput ${t.deploymentOverIt.throughputC64}, p50 latency ${t.deploymentOverIt.latencyP50C1}`,
    );
  }
  console.log(`runs started: ${starts.runsStartedPerSecond}/s; 200-step run: step p50 first 10 ${flat.first10.p50} ms, last 10 ${flat.last10.p50} ms`);
  console.log(`backlog of ${BACKLOG}: drained in ${round(drainSeconds, 1)} s, peak RSS MB ${JSON.stringify(peak)}; get runs: a page of ${pageSize} in ${round(getRunsMs, 0)} ms, all ${page.length} in ${round(allRunsMs, 0)} ms, the CLI process (first page of 500) ${round(cliMs, 0)} ms`);
  console.log(`CPU ms per step at c64: ${scenarios.map((s) => `raw ${JSON.stringify(s.raw.cpuMsPerStep)}, ${s.rawWithClient ? `raw + the same LLM call ${JSON.stringify(s.rawWithClient.cpuMsPerStep)}, ` : ""}then ${s.mode}/${s.llm} ${JSON.stringify(s.cpuMsPerStep)}`).join("; ")}`);
  console.log(`CPU ms per step at c1: ${scenarios.map((s) => `raw ${JSON.stringify(s.raw.cpuMsPerStepC1)}, ${s.rawWithClient ? `raw + the same LLM call ${JSON.stringify(s.rawWithClient.cpuMsPerStepC1)}, ` : ""}then ${s.mode}/${s.llm} ${JSON.stringify(s.cpuMsPerStepC1)}`).join("; ")}`);
  console.log(`service RSS MB after the steps scenarios: ${scenarios.map((s) => `${s.mode}/${s.llm} ${JSON.stringify(s.rssMb)}`).join("; ")}`);
  // The samples pooled over rounds are not kept: the summaries are.
  writeFileSync(new URL("../../../results.json", import.meta.url), `${JSON.stringify(results, (k, v: unknown) => (k === "samples" ? undefined : v), 2)}\n`);
  console.log(`bench/results.json written (${results.seconds} s)`);
  fake.stop();
  await nc.close();
}

await main();
