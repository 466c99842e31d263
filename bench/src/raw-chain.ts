import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { AckPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { encode, decodeTyped } from "@smallchain/shared";
import { z } from "zod";
import type { RawLlmCall } from "./raw-llm.js";
import { pool, summarize, rateOf, windowOf, type Samples, type Summary } from "./stats.js";

export type ChainResult = {
  concurrency: number;
  steps: number;
  seconds: number;
  stepsPerSecond: number;
  /** Steps per second while every chain was running (from the start until the first chain ended). */
  steadyStepsPerSecond: number;
  latencyMs: Summary;
  /** For pooling rounds; not written to results.json. */
  samples?: Samples;
};

export const RawMsg = z.object({ chain: z.number(), step: z.number(), kind: z.enum(["llm", "tool"]), body: z.string(), decided: z.boolean().optional() });
export type RawMsg = z.infer<typeof RawMsg>;

/**
 * Reads a message the chain wrote itself as Smallchain reads what its own code wrote (session 16): msgpack, then a
 * check of the envelope, the schema only should that fail.
 */
function readRaw(data: Uint8Array, what: string): RawMsg {
  return decodeTyped(RawMsg, data, what, true, (v) => {
    const m = v as Partial<RawMsg> | null;
    return typeof m === "object" && m !== null && typeof m.chain === "number" && typeof m.step === "number" && typeof m.kind === "string";
  });
}

/**
 * The bare JetStream chain of our design, with no Smallchain code: a command on a work-queue stream is pulled
 * and acked by a worker that appends an event on the chain's own subject; a driver consumes the event and
 * publishes the next command. One step = LLM command, its event, tool command, its event (4 stored messages),
 * with msgpack payloads read like ours (until session 16 validated whole by zod, as ours then were; since then the
 * envelope checked, as Smallchain checks what its own code wrote).
 *
 * With `decisions`, it is the floor of Smallchain's design before session 12 instead: before each command the driver
 * appends a decision to the chain's subject, guarded by the subject's last sequence (two deciders can never both
 * write), and publishes the command once the decision is stored. Six stored messages a step, and one more round
 * trip to the server before each command; the driver's consumer gets its own decisions back, as the scheduler's
 * does. No code of Smallchain's runs in it.
 *
 * With `workers`, the LLM commands and the tool commands are each pulled by a worker process of their own (two
 * durable consumers, one per kind), as in Smallchain's four processes: a step wakes three processes, not one.
 *
 * With `llm`, the worker (in this process) makes that call for each LLM command before it appends the event: the
 * raw chain with the same client cost as a deployment whose LLM is reached over HTTP.
 *
 * With `decisionsAsCommands`, the guarded decision is itself the command (a protocol NATS 2.9 allows if workers read
 * the events stream): no command stream, 4 stored messages a step as in the raw chain, but every event reaches the
 * driver and each kind's worker, which acks what is not its kind unread (a header says the kind). The floor of
 * that protocol, to compare with the design's (session 10). With `"by-subject"`, each decision goes to a subject of its
 * kind (`<chain>.<kind>`), guarded by it, that only that kind's worker reads: Smallchain's lanes since session 18, whose
 * guard NATS 2.9 makes whole by choosing the subject from the state a write is made from (see Names.runSubject).
 * With `"decision-subject"`,
 * every decision goes to the chain's one subject of decisions (`<chain>.d`), guarded by that subject's last sequence,
 * and the workers' results to the chain's own subject: both kinds' workers read the decisions (and ack the other
 * kind's unread), not the results. A protocol NATS 2.9 guards fully, if every input a decision depends on other than
 * the results of its calls is on the decisions' subject (session 11). Smallchain's design in sessions 12–17, and the
 * bench's floor then. With `driverReadsResultsOnly` (and the decision subject), the driver's consumer reads the results
 * only: the driver does not get its decisions back, as a scheduler reading no decisions would not (session 15).
 *
 * With `toolDecidedByWorker` (and `decisions`), the LLM worker appends the tool decision itself, right after its
 * result without waiting for its PubAck (deduplicated by its id, unguarded), and the driver publishes the tool command on it
 * without a decision of its own: the LLM's result and the tool call it asks for recorded in one round trip, as if the
 * llm-worker decided plain tool calls (session 10). 6 stores a step, 5 round trips one after another instead of 6.
 */
/**
 * The raw chain's options for Smallchain's protocol since session 18 (the lanes: each worker kind's decisions on a
 * subject of their own, guarded by it): the bench's floor. Sessions 13–17's floor was `"decision-subject"`.
 */
export const DESIGN = { decisionsAsCommands: "by-subject" } as const;

export async function rawChain(
  nc: NatsConnection,
  prefix: string,
  concurrency: number,
  stepsPerChain: number,
  chains: number,
  {
    decisions = false,
    decisionsAsCommands = false,
    toolDecidedByWorker = false,
    driverReadsResultsOnly = false,
    workers,
    llm,
  }: {
    decisions?: boolean;
    decisionsAsCommands?: boolean | "by-subject" | "decision-subject";
    toolDecidedByWorker?: boolean;
    driverReadsResultsOnly?: boolean;
    workers?: RawWorkerProcesses;
    llm?: RawLlmCall;
  } = {},
): Promise<ChainResult> {
  if (toolDecidedByWorker && (!decisions || llm)) throw new Error("toolDecidedByWorker needs decisions, and no LLM call");
  if (decisionsAsCommands && (decisions || llm)) throw new Error("decisionsAsCommands stands alone: its decisions are its commands");
  if (driverReadsResultsOnly && decisionsAsCommands !== "decision-subject") throw new Error("driverReadsResultsOnly goes with the decision subject");
  const up = prefix.toUpperCase();
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.add({ name: `${up}_RAWCMD`, subjects: [`${prefix}.raw.cmd.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
  await jsm.streams.add({ name: `${up}_RAWEV`, subjects: [`${prefix}.raw.ev.>`], storage: StorageType.File });
  // The chains' results only (`<chain>`, not `<chain>.d`): the driver does not get its own decisions back.
  const driverFilter = driverReadsResultsOnly ? { filter_subject: `${prefix}.raw.ev.*` } : {};
  await jsm.consumers.add(`${up}_RAWEV`, { durable_name: "driver", ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000, ...driverFilter });

  let stopWorkers: () => Promise<void>;
  if (workers && llm) throw new Error("the raw chain's LLM call is made by its worker in this process, not by worker processes");
  if (decisionsAsCommands) {
    const kinds = workers ? ["llm", "tool"] : ["both"];
    for (const kind of kinds) {
      // Decisions on the chain's own subject (`true`): the workers read every event, unfiltered.
      const filter = decisionsAsCommands === true ? {} : { filter_subject: decisionSubject(prefix, decisionsAsCommands, "*", kind === "both" ? "*" : kind) };
      await jsm.consumers.add(`${up}_RAWEV`, { durable_name: `evworker-${kind}`, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000, ...filter });
    }
    if (workers) {
      await workers.attach(prefix, "decisions");
      stopWorkers = () => workers.detach();
    } else {
      const worker = await serveRawDecisions(js, prefix, "both");
      stopWorkers = async () => void (await worker.close());
    }
  } else if (workers) {
    for (const kind of ["llm", "tool"]) {
      await jsm.consumers.add(`${up}_RAWCMD`, { durable_name: `worker-${kind}`, filter_subject: `${prefix}.raw.cmd.${kind}`, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 });
    }
    await workers.attach(prefix, toolDecidedByWorker ? "tool-decision" : undefined);
    stopWorkers = () => workers.detach();
  } else {
    await jsm.consumers.add(`${up}_RAWCMD`, { durable_name: "worker", ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 });
    const worker = await serveRawCommands(js, prefix, "worker", llm, toolDecidedByWorker);
    stopWorkers = async () => void (await worker.close());
  }

  const waiters = new Map<number, (seq: number) => void>();
  const driver = await (await js.consumers.get(`${up}_RAWEV`, "driver")).consume({ max_messages: 512 });
  void (async () => {
    for await (const m of driver) {
      const e = readRaw(m.data, "raw event");
      m.ack();
      // toolDecidedByWorker: the LLM half ends with the worker's tool decision, the tool half with the tool's result.
      if (toolDecidedByWorker ? e.kind === "tool" : !e.decided) waiters.get(e.chain)?.(m.seq);
    }
  })();

  /** The chain's newest sequence on its subject (by-subject: also each kind's subject): what its next decision expects. */
  const lastSeq = new Map<number | string, number>();
  const send = async (chain: number, step: number, kind: "llm" | "tool") => {
    const done = new Promise<number>((resolve) => waiters.set(chain, resolve));
    const decision = () => decisionOf(chain, step, kind);
    const msgID = `${chain}:${step}:${kind}:decided`;
    if (decisionsAsCommands) {
      // By subject, on 2.9 the guard covers only the kind's own subject, whose last message is this decision.
      // Decision subject: every decision on the chain's one subject of decisions, guarded by it; results elsewhere.
      const subject = decisionSubject(prefix, decisionsAsCommands, String(chain), kind);
      const guarded = decisionsAsCommands === true ? chain : subject;
      const h = headers();
      h.set(KIND_HEADER, kind);
      const stored = js.publish(subject, decision(), { msgID, headers: h, expect: { lastSubjectSequence: lastSeq.get(guarded) ?? 0 } });
      const result = await done;
      const { seq } = await stored;
      lastSeq.set(guarded, guarded === chain ? result : seq);
      return;
    }
    if (decisions && !(toolDecidedByWorker && kind === "tool")) {
      const ack = await js.publish(`${prefix}.raw.ev.${chain}`, decision(), { msgID, expect: { lastSubjectSequence: lastSeq.get(chain) ?? 0 } });
      lastSeq.set(chain, ack.seq);
    }
    void js.publish(`${prefix}.raw.cmd.${kind}`, encode({ chain, step, kind, body: "x".repeat(64) }), { msgID: `${chain}:${step}:${kind}:cmd` });
    lastSeq.set(chain, await done);
  };

  const latencies: number[] = [];
  const ends: number[] = [];
  let firstDone = Infinity;
  const started = performance.now();
  await pool(chains, concurrency, async (chain) => {
    for (let step = 1; step <= stepsPerChain; step++) {
      const t = performance.now();
      await send(chain, step, "llm");
      await send(chain, step, "tool");
      const end = performance.now();
      latencies.push(end - t);
      ends.push(end);
    }
    firstDone = Math.min(firstDone, performance.now());
  });
  const seconds = (performance.now() - started) / 1000;
  await stopWorkers();
  await driver.close();
  await jsm.streams.delete(`${up}_RAWCMD`);
  await jsm.streams.delete(`${up}_RAWEV`);
  const steps = chains * stepsPerChain;
  const window = chains === concurrency ? windowOf(ends, started, firstDone) : { steps, seconds };
  const steadyStepsPerSecond = rateOf(window);
  return {
    concurrency,
    steps,
    seconds,
    stepsPerSecond: Math.round(steps / seconds),
    steadyStepsPerSecond,
    latencyMs: summarize(latencies),
    samples: { steps, seconds, window, latencies },
  };
}

/**
 * The raw chain's worker: pulls the chain's commands through the durable consumer `durable` and, for each, appends
 * its event to the chain's subject and acks once it is stored (an LLM command after `llm`'s call, if given).
 * Returns the pull, to close.
 */
export async function serveRawCommands(js: JetStreamClient, prefix: string, durable: string, llm?: RawLlmCall, toolDecision = false): Promise<ConsumerMessages> {
  const messages = await (await js.consumers.get(`${prefix.toUpperCase()}_RAWCMD`, durable)).consume({ max_messages: 512 });
  const append = (cmd: RawMsg, m: { ack(): void }) => {
    const stored = [appendResult(js, prefix, cmd)];
    if (toolDecision && cmd.kind === "llm") {
      stored.push(js.publish(`${prefix}.raw.ev.${cmd.chain}`, decisionOf(cmd.chain, cmd.step, "tool"), { msgID: `${cmd.chain}:${cmd.step}:tool:decided` }));
    }
    return Promise.all(stored).then(() => m.ack());
  };
  void (async () => {
    for await (const m of messages) {
      const cmd = readRaw(m.data, "raw command");
      if (llm && cmd.kind === "llm") {
        // A failed call would leave its chain waiting for ever: say so and stop the bench.
        void llm(cmd.chain, cmd.step).then(
          () => append(cmd, m),
          (err: unknown) => {
            process.stderr.write(`the raw chain's LLM call failed: ${(err as Error).message}\n`);
            process.exit(1);
          },
        );
      } else {
        void append(cmd, m);
      }
    }
  })();
  return messages;
}

const KIND_HEADER = "Raw-Kind";

/**
 * Where a decision that is its command goes, for a chain and a kind (or `*`, to filter on): the chain's own subject
 * (`true`), a subject of its kind (`by-subject`), or the chain's one subject of decisions (`decision-subject`).
 */
function decisionSubject(prefix: string, mode: true | "by-subject" | "decision-subject", chain: string, kind: string): string {
  if (mode === "by-subject") return `${prefix}.raw.ev.${chain}.${kind}`;
  if (mode === "decision-subject") return `${prefix}.raw.ev.${chain}.d`;
  return `${prefix}.raw.ev.${chain}`;
}

/** A decision of the chain's: what the driver (or, with `toolDecidedByWorker`, the LLM worker) appends. */
function decisionOf(chain: number, step: number, kind: "llm" | "tool"): Uint8Array {
  return encode({ chain, step, kind, body: "x".repeat(64), decided: true });
}

/** A worker's result for a command (or a decision that is one), appended to the chain's subject, deduplicated by its id. */
function appendResult(js: JetStreamClient, prefix: string, { decided: _, ...cmd }: RawMsg) {
  return js.publish(`${prefix}.raw.ev.${cmd.chain}`, encode({ ...cmd, body: `${cmd.kind} done` }), { msgID: `${cmd.chain}:${cmd.step}:${cmd.kind}` });
}

/**
 * The worker of `decisionsAsCommands`: pulls every event of the chains through the durable consumer
 * `evworker-<kind>` and, for each decision of its kind ("both": either), appends the result to the chain's subject and
 * acks once it is stored; anything else is acked without being read. Returns the pull, to close.
 */
export async function serveRawDecisions(js: JetStreamClient, prefix: string, kind: "llm" | "tool" | "both"): Promise<ConsumerMessages> {
  const messages = await (await js.consumers.get(`${prefix.toUpperCase()}_RAWEV`, `evworker-${kind}`)).consume({ max_messages: 512 });
  void (async () => {
    for await (const m of messages) {
      const k = m.headers?.get(KIND_HEADER);
      if (!k || (kind !== "both" && k !== kind)) {
        m.ack();
        continue;
      }
      void appendResult(js, prefix, readRaw(m.data, "raw decision")).then(() => m.ack());
    }
  })();
  return messages;
}

const WORKER = fileURLToPath(new URL("./raw-worker.js", import.meta.url));

/**
 * Two raw worker processes, one for LLM commands and one for tool commands, as Smallchain's llm-worker and
 * tool-worker are. Started once and used by chain after chain, they warm up as the services do.
 */
export class RawWorkerProcesses {
  private stopping = false;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly control: string,
    private readonly children: ChildProcess[],
  ) {
    // A worker that dies mid-chain would leave the chain waiting for ever: say so and stop the bench.
    for (const child of children) {
      child.once("exit", (code, signal) => {
        if (this.stopping) return;
        process.stderr.write(`a raw worker process exited (${signal ?? `code ${code}`}) while the bench needed it\n`);
        process.exit(1);
      });
    }
  }

  static async start(nc: NatsConnection): Promise<RawWorkerProcesses> {
    const control = `rawbench.${Math.random().toString(36).slice(2, 9)}`;
    const children = await Promise.all((["llm", "tool"] as const).map((kind) => startWorkerProcess(`${control}.${kind}`, kind)));
    return new RawWorkerProcesses(nc, control, children);
  }

  /**
   * Each worker pulls the chain's commands of its kind, once the chain's consumers exist (`decisions`: the chain's
   * decisions are its commands; `tool-decision`: the LLM worker appends the tool decision after its result).
   */
  async attach(prefix: string, mode?: "decisions" | "tool-decision"): Promise<void> {
    await this.ask("attach", mode ? `${prefix} ${mode}` : prefix);
  }

  async detach(): Promise<void> {
    await this.ask("detach", "");
  }

  private async ask(what: "attach" | "detach", payload: string): Promise<void> {
    await Promise.all(
      ["llm", "tool"].map(async (kind) => {
        const reply = (await this.nc.request(`${this.control}.${kind}.${what}`, payload, { timeout: 10_000 })).string();
        if (reply !== "ok") throw new Error(`the raw ${kind} worker could not ${what}: ${reply}`);
      }),
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.children.map((child) => new Promise<void>((r) => (child.exitCode !== null ? r() : (child.once("exit", () => r()), child.kill("SIGTERM"))))),
    );
  }
}

function startWorkerProcess(control: string, kind: "llm" | "tool"): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, control, kind], { stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve(child));
    child.once("exit", (code) => reject(new Error(`raw ${kind} worker exited with ${code} before it was ready`)));
  });
}
