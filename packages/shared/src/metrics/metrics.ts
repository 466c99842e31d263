import { createRequire } from "node:module";
import type { Counter, Gauge, Histogram, Registry } from "prom-client";

type PromClient = typeof import("prom-client");
let loaded: PromClient | undefined;
/** prom-client is loaded when metrics are first created: the CLI, which never serves them, starts faster. */
function prom(): PromClient {
  return (loaded ??= createRequire(import.meta.url)("prom-client") as PromClient);
}
import type { Usage } from "../events.js";
import type { RunStatus } from "../run/state.js";

/**
 * How a command's handling ended. `ok`: its result event is stored (a tool that failed is still an ok command: the
 * agent sees the failure); `retried`: nak'd to be tried again; `failed`: a Failed event records that retrying
 * cannot help or retries ran out; `terminated`: malformed, dropped without an event.
 */
export type CommandOutcome = "ok" | "retried" | "failed" | "terminated";

/** The instruments of one service in this process; every series carries its `service` label. */
export type ServiceMetrics = {
  readonly service: string;
  /** One command handled; `seconds` is how long the attempt took (not observed for `terminated`). */
  command(subject: string, outcome: CommandOutcome, seconds: number): void;
  /** A message delivered more than once (a worker died, nak'd, or the ack wait ran out). */
  redelivered(): void;
  /** An event the service decoded and acted on. */
  event(type: string): void;
  /** Tokens (and, when the provider reports it, the cost) of one LLM call. */
  llmUsage(llm: string, usage: Usage, costUsd?: number): void;
  /** A run's status changed from `from` (undefined: the run is new) to `to`, as this process saw it. */
  runTransition(from: RunStatus | undefined, to: RunStatus): void;
  /** The scheduler recorded a decision. */
  decision(): void;
  /** The scheduler's decision lost to a newer event of the run (or to another replica) and was taken again. */
  decisionConflict(): void;
};

/** One process's metrics: a registry of its own (several installations may share a process, as tests do). */
export type Metrics = {
  readonly registry: Registry;
  /** The instruments for one service; the same object for the same name. */
  service(name: string): ServiceMetrics;
};

export type MetricsOptions = {
  /** Node's process metrics (CPU, memory, event-loop lag, GC); default true. */
  defaultMetrics?: boolean;
};

/** From a fast builtin tool call (milliseconds) to a slow LLM call (minutes). */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const OUTCOMES: readonly CommandOutcome[] = ["ok", "retried", "failed", "terminated"];

type Families = ReturnType<typeof families>;

function families(registry: Registry) {
  const registers = [registry];
  const { Counter, Gauge, Histogram } = prom();
  return {
    commands: new Counter({
      name: "smallchain_commands_handled_total",
      help: "Commands handled by workers, by outcome (ok, retried, failed, terminated)",
      labelNames: ["service", "subject", "outcome"] as const,
      registers,
    }),
    duration: new Histogram({
      name: "smallchain_command_duration_seconds",
      help: "How long one attempt at a command took, from decoding it to storing its event",
      labelNames: ["service", "subject"] as const,
      buckets: DURATION_BUCKETS,
      registers,
    }),
    redeliveries: new Counter({
      name: "smallchain_redeliveries_total",
      help: "Messages delivered more than once (delivery count > 1)",
      labelNames: ["service"] as const,
      registers,
    }),
    tokens: new Counter({
      name: "smallchain_llm_tokens_total",
      help: "LLM tokens used, by llm and kind (prompt, completion, cached; cached tokens are part of the prompt)",
      labelNames: ["llm", "kind"] as const,
      registers,
    }),
    cost: new Counter({
      name: "smallchain_llm_cost_usd_total",
      help: "LLM spend in US dollars, counted only for calls whose cost is known",
      labelNames: ["llm"] as const,
      registers,
    }),
    events: new Counter({
      name: "smallchain_events_handled_total",
      help: "Run events decoded and acted on, by service and event type",
      labelNames: ["service", "type"] as const,
      registers,
    }),
    runs: new Gauge({
      name: "smallchain_runs",
      help:
        "Runs by status, from the view transitions this projector process folded since it started. Replicas share " +
        "the events, so one replica's value may be negative: sum over replicas for the installation's count",
      labelNames: ["status"] as const,
      registers,
    }),
    decisions: new Counter({
      name: "smallchain_decisions_total",
      help: "Decisions the scheduler recorded",
      registers,
    }),
    conflicts: new Counter({
      name: "smallchain_decision_conflicts_total",
      help: "Decisions that found the run had moved on (or another scheduler had decided) and were taken again",
      registers,
    }),
  };
}

/** Creates the metric families on a new registry; one per process (or per installation in tests). */
export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const { Registry, collectDefaultMetrics } = prom();
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const f = families(registry);
  const services = new Map<string, ServiceMetrics>();
  return {
    registry,
    service(name) {
      let s = services.get(name);
      if (!s) services.set(name, (s = serviceMetrics(f, name)));
      return s;
    },
  };
}

type CommandChildren = { outcomes: Record<CommandOutcome, Counter.Internal>; duration: Histogram.Internal<"service" | "subject"> };
type LlmChildren = { prompt: Counter.Internal; completion: Counter.Internal; cached: Counter.Internal; cost: Counter.Internal };

/**
 * Label children are looked up once per label value and then reused: the hot path only adds to a number.
 * Counters start at an explicit 0 when their labels are first known, so `rate()` sees the first increment.
 */
function serviceMetrics(f: Families, service: string): ServiceMetrics {
  const commands = new Map<string, CommandChildren>();
  const events = new Map<string, Counter.Internal>();
  const llms = new Map<string, LlmChildren>();
  const runs = new Map<RunStatus, Gauge.Internal<"status">>();
  const redeliveries = zero(f.redeliveries.labels(service));

  const commandChildren = (subject: string): CommandChildren => {
    let c = commands.get(subject);
    if (!c) {
      const outcomes = Object.fromEntries(OUTCOMES.map((o) => [o, zero(f.commands.labels(service, subject, o))])) as Record<CommandOutcome, Counter.Internal>;
      commands.set(subject, (c = { outcomes, duration: f.duration.labels(service, subject) }));
    }
    return c;
  };
  const runGauge = (status: RunStatus) => {
    let g = runs.get(status);
    if (!g) runs.set(status, (g = f.runs.labels(status)));
    return g;
  };

  return {
    service,
    command(subject, outcome, seconds) {
      const c = commandChildren(subject);
      c.outcomes[outcome].inc();
      if (outcome !== "terminated") c.duration.observe(seconds);
    },
    redelivered: () => redeliveries.inc(),
    event(type) {
      let c = events.get(type);
      if (!c) events.set(type, (c = f.events.labels(service, type)));
      c.inc();
    },
    llmUsage(llm, usage, costUsd) {
      let c = llms.get(llm);
      if (!c) {
        c = {
          prompt: zero(f.tokens.labels(llm, "prompt")),
          completion: zero(f.tokens.labels(llm, "completion")),
          cached: zero(f.tokens.labels(llm, "cached")),
          cost: zero(f.cost.labels(llm)),
        };
        llms.set(llm, c);
      }
      c.prompt.inc(usage.promptTokens);
      c.completion.inc(usage.completionTokens);
      c.cached.inc(usage.cachedTokens);
      if (costUsd !== undefined) c.cost.inc(costUsd);
    },
    runTransition(from, to) {
      if (from === to) return;
      if (from !== undefined) runGauge(from).dec();
      runGauge(to).inc();
    },
    decision: () => f.decisions.inc(),
    decisionConflict: () => f.conflicts.inc(),
  };
}

function zero(counter: Counter.Internal): Counter.Internal {
  counter.inc(0);
  return counter;
}

/** Calls made on a ServiceMetrics elsewhere (a worker thread), to be made again on the real one. */
export type MetricCalls = { service: string; calls: [method: keyof Omit<ServiceMetrics, "service">, args: unknown[]][] };

/**
 * ServiceMetrics for a worker thread, whose registry would be out of reach of the process's `/metrics`: the
 * calls are gathered and handed to `send` at most every `everyMs` (one message, not one per event), for the
 * main thread to `replayMetrics` on its registry.
 */
export function relayMetrics(send: (batch: MetricCalls) => void, everyMs = 500): { service(name: string): ServiceMetrics; flush(): void } {
  const buffers = new Map<string, MetricCalls>();
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    for (const batch of buffers.values()) if (batch.calls.length > 0) send(batch);
    buffers.clear();
  };
  const record = (service: string, method: MetricCalls["calls"][number][0], args: unknown[]) => {
    let b = buffers.get(service);
    if (!b) buffers.set(service, (b = { service, calls: [] }));
    b.calls.push([method, args]);
    timer ??= setTimeout(flush, everyMs);
    timer.unref();
  };
  return {
    service: (name) => ({
      service: name,
      command: (...args) => record(name, "command", args),
      redelivered: () => record(name, "redelivered", []),
      event: (...args) => record(name, "event", args),
      llmUsage: (...args) => record(name, "llmUsage", args),
      runTransition: (...args) => record(name, "runTransition", args),
      decision: () => record(name, "decision", []),
      decisionConflict: () => record(name, "decisionConflict", []),
    }),
    flush,
  };
}

/** Makes the calls a relay gathered on this process's metrics. */
export function replayMetrics(metrics: Metrics, batch: MetricCalls): void {
  const s = metrics.service(batch.service) as unknown as Record<string, (...args: unknown[]) => void>;
  for (const [method, args] of batch.calls) s[method]?.(...args);
}
