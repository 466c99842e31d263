import { randomInt } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager, JetStreamApiError } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Client, isTerminal, names, parseConfig, type Names, type RunState } from "@smallchain/shared";
import { scriptByAgent, startFakeOpenAI } from "../../support/fake-openai.js";
import { ServiceSlot, type ServiceName } from "./services.js";
import { checkLlmRequests, checkStreams } from "./verify.js";

export type ChaosOptions = {
  natsUrl: string;
  /** Top-level runs started (each delegates to one child run). */
  runs: number;
  /** How long services are killed; runs are started during its first 60 %. */
  chaosMs: number;
  /** A kill comes after a random pause in this range. */
  killEveryMs: [number, number];
  /** After the killing stops, how long every run has to complete. */
  settleTimeoutMs: number;
  /** The schedulers project the views themselves (SC_SCHEDULER_PROJECTS=1), and no projector runs. */
  schedulerProjects?: boolean;
  log?: (line: string) => void;
};

export type ChaosReport = {
  prefix: string;
  runs: number;
  childRuns: number;
  completed: number;
  /** Runs not Completed when the wait ended, with their status. */
  notCompleted: string[];
  kills: number;
  killsByService: Record<string, number>;
  /** Deliveries beyond the first, from the durable consumers' delivered counts. */
  redeliveries: { scheduler: number; projector: number; commands: number };
  llmRequests: { expected: number; made: number };
  toolCalls: number;
  /** Times a command tool's script started (more than toolCalls when a worker died while a script ran). */
  toolExecutions: number;
  /** Calls whose side effect is not in the effects file exactly once. */
  effectViolations: string[];
  /** Event ids seen twice, or two results for one call or step, per run. */
  duplicates: string[];
  events: number;
  invalidEvents: string[];
  viewMismatches: string[];
  /** Requests the model got with a window that is no run's window at any of its LLM calls. */
  windowMismatches: string[];
  chaosMs: number;
  /**
   * When a run did not complete or a view differs: whether each service process is alive, its warnings and errors,
   * and what the consumers of the run subjects hold. For the failure's message.
   */
  diagnostics: string;
  /** From the first run started until every run completed. */
  completionMs: number;
  wallMs: number;
};

const SERVICES: ServiceName[] = ["scheduler", "projector", "llm-worker", "llm-worker", "tool-worker", "tool-worker"];
const LLM_CALLS_PER_RUN = 5;

function config(llmUrl: string, dir: string): string {
  const key = '"$SMALLCHAIN_IDEMPOTENCY_KEY"';
  // Every start is logged; the side effect itself is idempotent by key, as a tool told the key should be.
  const script = [
    `echo ${key} >> ${dir}/attempts`,
    "sleep 0.05",
    `exec 9>>${dir}/lock`,
    "flock 9",
    `grep -qxF ${key} ${dir}/effects || echo ${key} >> ${dir}/effects`,
    'echo "recorded $SMALLCHAIN_CALL_ID"',
  ].join("; ");
  return `
llms:
  - { name: fake, provider: openai, model: fake-model, base_url: "${llmUrl}", timeout_ms: 10000 }
agents:
  - name: planner
    system_prompt: You are the chaos planner.
    llm: fake
    tools: [ record, { agent: helper } ]
  - name: helper
    system_prompt: You are the chaos helper.
    llm: fake
    tools: [ record ]
tools:
  - name: record
    description: records a side effect
    parameters: { type: object, properties: { n: { type: number } } }
    executor: { command: { runtime: bash, timeout_ms: 10000, script: '${script}' } }
tasks:
  - { name: chaos, user_message: go, agent: planner }
`;
}

const SCRIPT = scriptByAgent({
  planner: [
    { toolCalls: [{ name: "record", arguments: { n: 1 } }, { name: "record", arguments: { n: 2 } }] },
    { toolCalls: [{ name: "helper", arguments: { message: "record one more" } }] },
    { content: "planner done" },
  ],
  helper: [{ toolCalls: [{ name: "record", arguments: { n: 3 } }] }, { content: "helper done" }],
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `promise`, or an error naming `what` after `ms`: a step of the harness that never answers (seen once in CI
 * on a loaded machine, after every run had completed) fails the run saying which step, instead of hanging
 * until the test's own timeout with nothing to show.
 */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts scheduler, projector, two llm-workers and two tool-workers as processes, starts `runs` runs
 * (a planner that calls a command tool twice, delegates to a helper that calls it once, and answers), and
 * kills -9 a random service every few hundred ms, starting it again at once. Then it checks every run
 * completed, no run's stream holds a duplicate or invalid event, every tool call's side effect happened
 * once, and folding the streams gives the views and context windows in KV.
 */
export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const log = opts.log ?? (() => {});
  const wallStart = Date.now();
  const prefix = `chaos${randomInt(36 ** 6).toString(36)}`;
  const n = names(prefix);
  const nc = await connect({ servers: opts.natsUrl });
  const dir = mkdtempSync(join(tmpdir(), "sc-chaos-"));
  writeFileSync(join(dir, "effects"), "");
  writeFileSync(join(dir, "attempts"), "");
  const fake = await startFakeOpenAI(SCRIPT);
  const services = opts.schedulerProjects ? SERVICES.filter((s) => s !== "projector") : SERVICES;
  const slots = services.map(
    (s) =>
      new ServiceSlot(s, {
        NATS_URL: opts.natsUrl,
        SC_PREFIX: prefix,
        OPENAI_API_KEY: "test",
        SC_LLM_ACK_WAIT_MS: "2000",
        SC_TOOL_ACK_WAIT_MS: "2000",
        ...(opts.schedulerProjects && { SC_SCHEDULER_PROJECTS: "1" }),
      }),
  );
  try {
    const client = await Client.connect(nc, n);
    await client.apply(parseConfig(config(fake.url, dir), "chaos.yaml", await client.knownNames()));
    for (const s of slots) s.start();
    await Promise.all(slots.map((s) => s.waitReady()));
    log(`chaos: prefix ${prefix}, ${slots.length} service processes up; ${opts.runs} runs over ${opts.chaosMs} ms of kills`);

    const runIds = Array.from({ length: opts.runs }, (_, i) => `run${i}`);
    const firstStart = Date.now();
    const launching = (async () => {
      const spacing = (opts.chaosMs * 0.6) / opts.runs;
      for (const [i, runId] of runIds.entries()) {
        await client.startRun({ task: "chaos", runId, name: runId });
        const due = firstStart + (i + 1) * spacing;
        if (due > Date.now()) await sleep(due - Date.now());
      }
    })();

    const killsByService: Record<string, number> = {};
    let kills = 0;
    const chaosEnd = Date.now() + opts.chaosMs;
    while (Date.now() < chaosEnd) {
      await sleep(randomInt(opts.killEveryMs[0], opts.killEveryMs[1] + 1));
      const victim = slots[randomInt(slots.length)]!;
      await victim.kill("SIGKILL");
      victim.start();
      kills++;
      killsByService[victim.name] = (killsByService[victim.name] ?? 0) + 1;
    }
    await within(30_000, "starting the runs", launching);
    await within(30_000, "the services' restarts", Promise.all(slots.map((s) => s.waitReady())));
    log(`chaos: ${kills} kills done; waiting for the runs to complete`);

    const deadline = Date.now() + opts.settleTimeoutMs;
    let views: RunState[] = [];
    for (;;) {
      // One listing that hangs is given up and asked again, until the deadline.
      views = await within(10_000, "listing the runs", client.listRuns())
        .then((r) => r.runs)
        .catch((err: unknown) => {
          if (Date.now() > deadline) throw err;
          log(`chaos: ${(err as Error).message}; listing again`);
          return views;
        });
      const done = views.filter(isTerminal).length;
      if (views.length === 2 * opts.runs && done === views.length) break;
      if (Date.now() > deadline) break;
      await sleep(250);
    }
    const completionMs = Date.now() - firstStart;

    const report: ChaosReport = {
      prefix,
      runs: views.filter((v) => v.depth === 0).length,
      childRuns: views.filter((v) => v.depth > 0).length,
      completed: views.filter((v) => v.status === "Completed").length,
      notCompleted: [],
      kills,
      killsByService,
      redeliveries: await within(20_000, "reading the consumers' redeliveries", redeliveries(nc, n)),
      llmRequests: { expected: opts.runs * LLM_CALLS_PER_RUN, made: fake.requests.length },
      toolCalls: 0,
      toolExecutions: lines(join(dir, "attempts")).length,
      effectViolations: [],
      duplicates: [],
      events: 0,
      invalidEvents: [],
      viewMismatches: [],
      windowMismatches: [],
      chaosMs: opts.chaosMs,
      diagnostics: "",
      completionMs,
      wallMs: 0,
    };
    const viewed = new Set(views.map((v) => v.runId));
    for (const runId of runIds) if (!viewed.has(runId)) report.notCompleted.push(`${runId}: no view`);
    for (const v of views) if (v.status !== "Completed") report.notCompleted.push(`${v.runId}: ${v.status}${v.error ? ` (${v.error})` : ""}`);

    const check = await within(60_000, "reading and checking every run's stream", checkStreams(client, views));
    report.events = check.events;
    report.invalidEvents = check.invalidEvents;
    report.duplicates = check.duplicates;
    report.viewMismatches = check.viewMismatches;
    report.windowMismatches = checkLlmRequests(check.streams, fake.requests);
    const expectedEffects = new Set<string>();
    for (const [runId, events] of check.streams) {
      for (const e of events) if (e.type === "ToolCallRequested" && e.data.kind === "tool") expectedEffects.add(`${runId}:tool:${e.data.callId}`);
    }

    report.toolCalls = expectedEffects.size;
    const effects = new Map<string, number>();
    for (const key of lines(join(dir, "effects"))) effects.set(key, (effects.get(key) ?? 0) + 1);
    for (const key of expectedEffects) {
      const count = effects.get(key) ?? 0;
      if (count !== 1) report.effectViolations.push(`${key}: side effect happened ${count} times`);
    }
    for (const key of effects.keys()) if (!expectedEffects.has(key)) report.effectViolations.push(`${key}: side effect of a call no run requested`);

    if (report.notCompleted.length > 0 || report.viewMismatches.length > 0) {
      report.diagnostics = await within(20_000, "gathering diagnostics", diagnose(nc, n, slots)).catch((err: unknown) => `diagnostics failed: ${(err as Error).message}`);
    }
    report.wallMs = Date.now() - wallStart;
    return report;
  } catch (err) {
    const outputs = slots.map((s) => `--- ${s.name} (${s.incarnations} incarnations)\n${s.tail(2000)}`).join("\n");
    throw new Error(`chaos run failed: ${(err as Error).message}\n${outputs}`, { cause: err });
  } finally {
    await within(10_000, "killing the services", Promise.all(slots.map((s) => s.kill("SIGKILL")))).catch(() => {});
    await within(30_000, "deleting the installation", deletePrefix(nc, prefix)).catch(() => {});
    await nc.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Fails the caller with every broken guarantee listed, or returns quietly. */
export function assertChaosHeld(r: ChaosReport, runs: number): void {
  const problems = [
    r.runs !== runs && `${r.runs} top-level runs instead of ${runs}`,
    r.childRuns !== runs && `${r.childRuns} child runs instead of ${runs}`,
    r.kills === 0 && "no service was killed",
    r.notCompleted.length > 0 && `runs not completed:\n  ${r.notCompleted.slice(0, 20).join("\n  ")}`,
    r.duplicates.length > 0 && `duplicate events:\n  ${r.duplicates.slice(0, 20).join("\n  ")}`,
    r.invalidEvents.length > 0 && `invalid events:\n  ${r.invalidEvents.slice(0, 20).join("\n  ")}`,
    r.effectViolations.length > 0 && `side effects not once per call:\n  ${r.effectViolations.slice(0, 20).join("\n  ")}`,
    r.toolCalls !== 3 * runs && `${r.toolCalls} tool calls instead of ${3 * runs}`,
    r.viewMismatches.length > 0 && `views differ from the fold of the streams:\n  ${r.viewMismatches.slice(0, 5).join("\n  ")}`,
    r.windowMismatches.length > 0 && `the model got windows that are not the streams':\n  ${r.windowMismatches.slice(0, 5).join("\n  ")}`,
  ].filter((p): p is string => typeof p === "string");
  if (problems.length > 0) throw new Error(`chaos broke guarantees (prefix ${r.prefix}):\n${problems.join("\n")}\n${r.diagnostics}`);
}

export function formatReport(r: ChaosReport): string {
  const kills = Object.entries(r.killsByService)
    .map(([s, k]) => `${s} ${k}`)
    .join(", ");
  return [
    `runs:                 ${r.runs} (+ ${r.childRuns} child runs), ${r.completed} Completed`,
    `kills (-9):           ${r.kills} over ${(r.chaosMs / 1000).toFixed(1)} s (${kills})`,
    `redeliveries:         ${r.redeliveries.scheduler + r.redeliveries.projector + r.redeliveries.commands} (scheduler ${r.redeliveries.scheduler}, projector ${r.redeliveries.projector}, llm+tool commands ${r.redeliveries.commands})`,
    `LLM requests:         ${r.llmRequests.made} for ${r.llmRequests.expected} LLM steps`,
    `tool calls:           ${r.toolCalls}, scripts started ${r.toolExecutions}, side effects not exactly once: ${r.effectViolations.length}`,
    `events checked:       ${r.events}, invalid ${r.invalidEvents.length}, duplicates found ${r.duplicates.length}`,
    `views from streams:   ${r.viewMismatches.length} view mismatches; ${r.windowMismatches.length} LLM requests with a window no stream had`,
    `time:                 all runs done ${(r.completionMs / 1000).toFixed(1)} s after the first started; wall ${(r.wallMs / 1000).toFixed(1)} s`,
  ].join("\n");
}

/** Each service process alive or not, with its warnings and errors; and the consumers of the run subjects. */
async function diagnose(nc: NatsConnection, n: Names, slots: ServiceSlot[]): Promise<string> {
  const jsm = await jetstreamManager(nc);
  const out: string[] = [];
  for (const durable of [n.consumers.scheduler, n.consumers.projector, n.consumers.llmDecisions, n.consumers.toolDecisions]) {
    const info = await jsm.consumers.info(n.eventsStream, durable).catch(() => undefined);
    if (!info) continue;
    out.push(
      `consumer ${durable}: pending ${info.num_pending}, ack pending ${info.num_ack_pending}, waiting pulls ${info.num_waiting}, delivered up to ${info.delivered.stream_seq}, acked up to ${info.ack_floor.stream_seq}`,
    );
  }
  for (const s of slots) {
    const notable = s
      .output()
      .split("\n")
      .filter((l) => /"level":(40|50|60)/.test(l))
      .slice(-8);
    out.push(`--- ${s.name}: ${s.alive ? "alive" : "NOT alive"}, ${s.incarnations} incarnations${notable.length > 0 ? `\n${notable.join("\n")}` : ""}`);
  }
  return out.join("\n");
}

function lines(file: string): string[] {
  return readFileSync(file, "utf8").split("\n").filter(Boolean);
}

async function redeliveries(nc: NatsConnection, n: Names): Promise<ChaosReport["redeliveries"]> {
  const jsm = await jetstreamManager(nc);
  const events = await jsm.streams.info(n.eventsStream);
  const commands = await jsm.streams.info(n.commandsStream);
  const delivered = async (stream: string, durable: string) => (await jsm.consumers.info(stream, durable)).delivered.consumer_seq;
  // Each worker kind's consumer gets everything on its kind's lane of every run (made before any run).
  const onLane = async (lane: "llm" | "tool") => {
    const { state } = await jsm.streams.info(n.eventsStream, { subjects_filter: n.allLaneSubject(lane) });
    return Object.values(state.subjects ?? {}).reduce((a, b) => a + b, 0);
  };
  return {
    scheduler: (await delivered(n.eventsStream, n.consumers.scheduler)) - events.state.messages,
    // None where the schedulers project the views (no projector consumer then).
    projector: (await delivered(n.eventsStream, n.consumers.projector).catch(() => events.state.messages)) - events.state.messages,
    // A work queue keeps no acked message: every command ever stored has a sequence.
    commands:
      (await delivered(n.commandsStream, n.consumers.llmWorker)) +
      (await delivered(n.commandsStream, n.consumers.toolWorker)) -
      commands.state.last_seq +
      (await delivered(n.eventsStream, n.consumers.llmDecisions)) -
      (await onLane("llm")) +
      (await delivered(n.eventsStream, n.consumers.toolDecisions)) -
      (await onLane("tool")),
  };
}

async function deletePrefix(nc: NatsConnection, prefix: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const starts = [`${prefix.toUpperCase()}_`, `KV_${prefix}_`, `OBJ_${prefix}_`];
  const doomed: string[] = [];
  for await (const name of jsm.streams.names()) if (starts.some((s) => name.startsWith(s))) doomed.push(name);
  for (const name of doomed) {
    try {
      await jsm.streams.delete(name);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.status === 404)) throw err;
    }
  }
}
