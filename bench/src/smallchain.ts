import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { Client, names, parseConfig } from "@smallchain/shared";
import { pool, summarize, rateOf, windowOf, type Samples, type Summary } from "./stats.js";

const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const SERVICES = ["scheduler", "projector", "llm-worker", "tool-worker"] as const;
/**
 * `processes`: the four services, each a process. `three-processes`: the scheduler projects the views itself
 * (SC_SCHEDULER_PROJECTS=1) and no projector runs. `in-process`: `smallchain dev`, one process.
 */
export type Mode = "processes" | "three-processes" | "in-process";
export type Llm = "mock" | "openai";

export type Installation = {
  client: Client;
  stop(): Promise<void>;
  /** Resident memory of each service, MB. */
  rss(): Record<string, number>;
  /** Process ids of the services (in-process: the one `smallchain dev` process). */
  pids(): Record<string, number | undefined>;
};

/**
 * The services of an installation: as four processes, as three (the scheduler projecting), or as one
 * `smallchain dev` process (`in-process`).
 * Either way they run outside this process, whose observer, pool of runs and raw chain would otherwise share
 * their thread. BENCH_SKIP=projector,... leaves services out (processes only); BENCH_PROFILE_DIR=dir writes a
 * CPU profile of each process there (node --cpu-prof); BENCH_NODE_ARGS adds node flags to them.
 */
export async function startServices(nc: NatsConnection, prefix: string, mode: Mode, env: NodeJS.ProcessEnv = {}): Promise<Installation> {
  const n = names(prefix);
  const client = await Client.connect(nc, n);
  const skipped = (process.env.BENCH_SKIP ?? "").split(",");
  const children = new Map<string, ChildProcess>();
  const start = (name: string, args: string[], ready: string) =>
    new Promise<void>((resolve, reject) => {
      const flags = process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [];
      flags.push(...(process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? []));
      const child = spawn(process.execPath, [...flags, ...args], {
        env: { ...process.env, LOG_LEVEL: mode === "in-process" ? "warn" : "info", SC_PREFIX: prefix, ...(mode === "three-processes" && { SC_SCHEDULER_PROJECTS: "1" }), ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.set(name, child);
      let out = "";
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes(ready)) resolve();
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", (d: Buffer) => {
        onData(d);
        // What goes wrong shows; `smallchain dev`'s own lines of what it started do not.
        const lines = d.toString().split("\n").filter((l) => l && !l.startsWith("smallchain dev:"));
        if (lines.length > 0) process.stderr.write(`${lines.join("\n")}\n`);
      });
      child.once("exit", (code) => reject(new Error(`${name} exited with ${code}: ${out}`)));
    });
  if (mode === "in-process") {
    await start("all (one process)", [`${ROOT}packages/cli/bin/smallchain.js`, "dev", "--prefix", prefix], "running on");
  } else {
    const left = mode === "three-processes" ? [...skipped, "projector"] : skipped;
    await Promise.all(SERVICES.filter((s) => !left.includes(s)).map((name) => start(name, [`${ROOT}services/${name}/dist/main.js`], " started")));
  }
  return {
    client,
    stop: async () => {
      await Promise.all(
        [...children.values()].map((c) => new Promise<void>((r) => (c.exitCode !== null ? r() : (c.once("exit", () => r()), c.kill("SIGTERM"))))),
      );
    },
    rss: () => Object.fromEntries([...children].map(([name, c]) => [name, rssOf(c.pid)])),
    pids: () => Object.fromEntries([...children].map(([name, c]) => [name, c.pid])),
  };
}

function rssOf(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
  } catch {
    return 0;
  }
}

/** Deletes every stream, KV bucket and object store of an installation's prefix. */
export async function cleanup(nc: NatsConnection, prefix: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const starts = [`${prefix.toUpperCase()}_`, `KV_${prefix}_`, `OBJ_${prefix}_`];
  const doomed: string[] = [];
  // Collected first: deleting while paging through the names can skip some.
  for await (const name of jsm.streams.names()) if (starts.some((s) => name.startsWith(s))) doomed.push(name);
  for (const name of doomed) await jsm.streams.delete(name);
}

/**
 * Waits until the installation has nothing left to do: every consumer of its events and commands has delivered and
 * had acked all it holds (the projector trails a pool of 64 by up to a second), then a moment for the views held
 * back. The raw chain measured next must not share the cores with the tail of the deployment's last round.
 */
export async function quiesce(nc: NatsConnection, prefix: string, timeoutMs = 10_000): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const n = names(prefix);
  const busy = async () => {
    let left = 0;
    for (const stream of [n.eventsStream, n.commandsStream]) {
      for await (const c of jsm.consumers.list(stream)) left += c.num_pending + c.num_ack_pending;
    }
    return left;
  };
  const deadline = Date.now() + timeoutMs;
  while ((await busy()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 200));
}

/** The agent of every measurement: each LLM call returns one call of the builtin add, `steps` times, then an answer. */
export function benchConfig(llm: Llm, steps: number, baseUrl?: string): string {
  const reply = "      - tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ]";
  const llmBlock =
    llm === "mock"
      ? `  - name: bench\n    provider: mock\n    replies:\n${Array(steps).fill(reply).join("\n")}\n      - content: done`
      : `  - name: bench\n    provider: openai\n    model: fake\n    base_url: ${baseUrl}`;
  return `
llms:
${llmBlock}
  - name: quick
    provider: mock
    replies: [ { content: done } ]
agents:
  - { name: stepper, llm: bench, tools: [ add ], max_steps: ${steps + 5} }
  - { name: answerer, llm: quick }
tools:
  - { name: add, builtin: add }
tasks:
  - { name: steps, user_message: go, agent: stepper }
  - { name: quick, user_message: go, agent: answerer }
`;
}

/**
 * What an event is, from its Nats-Msg-Id alone (`<run>:llm:<step>`, `<run>:started`, `<run>:completed`, ...):
 * the observer must not load the machine it measures by decoding every payload.
 */
function kindOf(msgId: string): { type: string; runId: string } {
  const [runId = "", key = ""] = msgId.split(":");
  const type = key === "llm" ? "LLMRequested" : key === "started" ? "RunStarted" : key === "completed" ? "RunCompleted" : key === "failed" ? "RunFailed" : key;
  return { type, runId };
}

/** Watches every event of the installation on core NATS (no extra consumer): step timings and run ends. */
export class Observer {
  private readonly llmRequested = new Map<string, number[]>();
  private readonly ends = new Map<string, () => void>();
  private readonly ended = new Set<string>();
  private readonly startedWaiters = new Map<string, () => void>();
  readonly started = new Set<string>();
  private readonly subs: ReturnType<NatsConnection["subscribe"]>[];

  constructor(nc: NatsConnection, prefix: string) {
    // Its request, start and end are on the run's lane `.ev`, its LLM calls (and a budget's end) on `.llm`.
    const callback = (_err: unknown, msg: Msg) => {
      const now = performance.now();
      const e = kindOf(msg.headers?.get("Nats-Msg-Id") ?? "");
      if (e.type === "LLMRequested") {
        const list = this.llmRequested.get(e.runId) ?? [];
        list.push(now);
        this.llmRequested.set(e.runId, list);
      } else if (e.type === "RunStarted") {
        this.started.add(e.runId);
        this.startedWaiters.get(e.runId)?.();
      } else if (e.type === "RunCompleted" || e.type === "RunFailed") {
        this.ended.add(e.runId);
        this.ends.get(e.runId)?.();
      }
    };
    this.subs = [`${prefix}.run.*.ev`, `${prefix}.run.*.llm`].map((subject) => nc.subscribe(subject, { callback }));
  }

  whenStarted(runId: string): Promise<void> {
    if (this.started.has(runId)) return Promise.resolve();
    return new Promise((r) => this.startedWaiters.set(runId, r));
  }

  done(runId: string): Promise<void> {
    if (this.ended.has(runId)) return Promise.resolve();
    return new Promise((r) => this.ends.set(runId, r));
  }

  get endedCount(): number {
    return this.ended.size;
  }

  /** When each step of the run ended: every LLMRequested after its first. */
  stepEnds(runId: string): number[] {
    return (this.llmRequested.get(runId) ?? []).slice(1);
  }

  /** Durations of steps: from one LLMRequested to the next (an LLM call, its tool call, and the decisions between). */
  stepDurations(runId: string): number[] {
    const t = this.llmRequested.get(runId) ?? [];
    return t.slice(1).map((v, i) => v - t[i]!);
  }

  close(): void {
    for (const sub of this.subs) sub.unsubscribe();
  }
}

export type StepResult = {
  concurrency: number;
  runs: number;
  steps: number;
  seconds: number;
  /** Over the whole wall time, the pool's filling and draining included. */
  stepsPerSecond: number;
  /** While `concurrency` runs were in flight: from the start of the run that filled the pool to the start of the last run. */
  steadyStepsPerSecond: number;
  latencyMs: Summary;
  /** For pooling rounds; not written to results.json. */
  samples?: Samples;
};

/** `runs` runs of the `steps` task, at most `concurrency` at once. */
export async function measureSteps(inst: Installation, obs: Observer, concurrency: number, runs: number, stepsPerRun: number): Promise<StepResult> {
  const ids: string[] = [];
  const starts: number[] = [];
  const t0 = performance.now();
  await pool(runs, concurrency, async () => {
    starts.push(performance.now());
    const { runId } = await inst.client.startRun({ task: "steps" });
    ids.push(runId);
    await obs.done(runId);
  });
  const seconds = (performance.now() - t0) / 1000;
  const latencies = ids.flatMap((id) => obs.stepDurations(id));
  const steps = runs * stepsPerRun;
  const stepsPerSecond = Math.round(steps / seconds);
  const full = starts[concurrency - 1];
  const last = starts.at(-1);
  const window =
    runs > concurrency && full !== undefined && last !== undefined ? windowOf(ids.flatMap((id) => obs.stepEnds(id)), full, last) : { steps, seconds };
  const steadyStepsPerSecond = rateOf(window);
  return { concurrency, runs, steps, seconds, stepsPerSecond, steadyStepsPerSecond, latencyMs: summarize(latencies), samples: { steps, seconds, window, latencies } };
}

/** Requests `count` runs as fast as the client can and times until every one has started. */
export async function measureStarts(inst: Installation, obs: Observer, count: number): Promise<{ runs: number; seconds: number; runsStartedPerSecond: number }> {
  const t0 = performance.now();
  const ids: string[] = [];
  await pool(count, 64, async () => {
    ids.push((await inst.client.startRun({ task: "quick" })).runId);
  });
  await Promise.all(ids.map((id) => obs.whenStarted(id)));
  const seconds = (performance.now() - t0) / 1000;
  return { runs: count, seconds, runsStartedPerSecond: Math.round(count / seconds) };
}

export async function applyConfig(client: Client, yaml: string): Promise<void> {
  await client.apply(parseConfig(yaml, "bench.yaml"));
}
