import { randomBytes } from "node:crypto";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ConfigStore, CONFIG_KINDS } from "./config/store.js";
import { discoverMcpTools } from "./mcp/discover.js";
import { notFound } from "./run/spec.js";
import type { ConfigKind, SmallchainConfig } from "./config/schema.js";
import { ConcurrencyError, RetryableError } from "./errors.js";
import { Control } from "./control.js";
import { startRunTrace } from "./tracing.js";
import { EventStore } from "./eventstore.js";
import { runRequested, type RecordedEvent, type RunEvent } from "./events.js";
import { Blobs } from "./blobs.js";
import { deriveRunId, isRunId, newRunId } from "./ids.js";
import type { Names } from "./names.js";
import { openOrProvision, provision, type Buckets, type ProvisionOptions } from "./nats/provision.js";
import { readRange } from "./nats/consume.js";
import { allValues, decodeRunIndexEntry, decodeView, decodeWaitEntry, getRunView, type WaitEntry } from "./run/views.js";
import { isTerminal, type RunState } from "./run/state.js";
import { ForkError, planFork } from "./run/fork.js";
import { contextWindowOf } from "./run/window.js";
import type { ChatMessage } from "./run/messages.js";
import { budgetHourMs, type Limits, type Spend } from "./run/budget.js";
import { spendBetween, type SpendKind } from "./run/spend.js";

export type StartRunOptions = { task: string; message?: string; name?: string; runId?: string; limits?: Limits };
export type StartedRun = { runId: string; name?: string; created: boolean };
export type ApplyResult = { changed: string[]; unchanged: string[]; runs: StartedRun[] };

/** What the CLI, the HTTP gateway and tests do with a Smallchain installation. */
export class Client {
  private constructor(
    readonly nc: NatsConnection,
    readonly names: Names,
    readonly buckets: Buckets,
    readonly store: EventStore,
    readonly config: ConfigStore,
  ) {}

  /** With `bind`, an existing installation is bound to without checking every stream and bucket (the CLI). */
  static async connect(nc: NatsConnection, names: Names, opts: ProvisionOptions & { bind?: boolean } = {}): Promise<Client> {
    const buckets = opts.bind ? await openOrProvision(nc, names, opts) : await provision(nc, names, opts);
    return new Client(nc, names, buckets, await EventStore.open(nc, names), await ConfigStore.open(buckets.config));
  }

  /** Names of everything applied so far, so a file may refer to objects applied earlier. */
  async knownNames(): Promise<Record<ConfigKind, string[]>> {
    await this.config.loadAll();
    const lookup = this.config.lookup();
    return Object.fromEntries(CONFIG_KINDS.map((k) => [k, lookup.names(k)])) as Record<ConfigKind, string[]>;
  }

  /**
   * Lists the tools of the config's MCP servers, stores the config, then starts its runs. A named run starts
   * once: applying the file again finds it. `file` names the config in errors.
   */
  async apply(parsed: SmallchainConfig, { file }: { file?: string } = {}): Promise<ApplyResult> {
    const config = await discoverMcpTools(parsed, file);
    const results = await this.config.apply(config);
    const runs: StartedRun[] = [];
    for (const run of config.runs) {
      runs.push(
        await this.startRun({
          task: run.task,
          name: run.name,
          runId: deriveRunId("named", this.names.prefix, run.name),
          ...(run.message !== undefined && { message: run.message }),
        }),
      );
    }
    return {
      changed: results.filter((r) => r.changed).map((r) => r.key),
      unchanged: results.filter((r) => !r.changed).map((r) => r.key),
      runs,
    };
  }

  async startRun(opts: StartRunOptions): Promise<StartedRun> {
    const task = await this.config.fetch("task", opts.task);
    if (!task) {
      await this.config.loadAll();
      throw notFound(this.config.lookup(), "task", opts.task);
    }
    if (opts.runId !== undefined && !isRunId(opts.runId)) {
      throw new Error(`run id ${JSON.stringify(opts.runId)} is invalid: it must be 1-64 letters, digits, '_' or '-'`);
    }
    const runId = opts.runId ?? newRunId();
    const event = runRequested(
      runId,
      Date.now(),
      { agent: task.agent, task: task.name, input: opts.message ?? task.user_message, name: opts.name, limits: opts.limits },
      startRunTrace(runId, { "smallchain.task": task.name }),
    );
    try {
      const r = await this.store.append(event, 0);
      return { runId, created: !r.duplicate, ...(opts.name !== undefined && { name: opts.name }) };
    } catch (err) {
      if (err instanceof ConcurrencyError) return { runId, created: false, ...(opts.name !== undefined && { name: opts.name }) };
      throw err;
    }
  }

  /** Approvals, answers and callback results for waiting runs (checked, then appended once). */
  get control(): Control {
    return (this.controlInstance ??= new Control(this.store, this.buckets.runs));
  }
  private controlInstance: Control | undefined;

  /** Calls waiting for people or the outside world, oldest first; `kind` narrows them to approvals, questions or callbacks. */
  async listWaits(kind?: WaitEntry["kind"]): Promise<WaitEntry[]> {
    const waits = (await allValues(this.buckets.waits)).map(decodeWaitEntry);
    return waits.filter((w) => kind === undefined || w.kind === kind).sort((a, b) => a.since - b.since || a.runId.localeCompare(b.runId));
  }

  getRun(runId: string): Promise<RunState | undefined> {
    return getRunView(this.buckets.runs, runId);
  }

  /**
   * Run views, newest first: a page of `limit` (0: all) after skipping `offset`. A page reads its slice of the
   * run index and those runs' views, so its cost follows the page, not the number of runs; all of them are
   * read with one watch over the views.
   */
  async listRuns({ limit = 0, offset = 0 }: { limit?: number; offset?: number } = {}): Promise<{ runs: RunState[]; total: number }> {
    const newestFirst = (a: RunState, b: RunState) => b.createdAt - a.createdAt || a.runId.localeCompare(b.runId);
    if (limit <= 0) {
      const views = (await allValues(this.buckets.runs)).map(decodeView).sort(newestFirst);
      return { runs: views.slice(offset), total: views.length };
    }
    const jsm = await jetstreamManager(this.nc);
    const { state } = await jsm.streams.info(this.names.runIndexStream);
    const last = state.last_seq - offset;
    const first = Math.max(state.first_seq, last - limit + 1);
    const ids = new Set<string>();
    if (state.messages > 0 && last >= first) {
      const consumer = await jetstream(this.nc).consumers.get(this.names.runIndexStream, {
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: first,
      });
      const messages = await consumer.consume({ max_messages: Math.min(limit, 1000) });
      // As a read of a run (EventStore.readRun): a consumer that stalls fails the listing, to be asked again.
      const outcome = await readRange(messages, this.store.readStallMs, (m) => {
        if (m.seq <= last) ids.add(decodeRunIndexEntry(m.data).runId);
        return m.seq >= last;
      });
      if (outcome !== "done") {
        const why = outcome === "stalled" ? `sent nothing for ${this.store.readStallMs} ms` : "ended";
        throw new RetryableError(`listing runs: the run index ${why} before #${last}; try again`, 1000);
      }
    }
    const views = await Promise.all([...ids].map((id) => this.getRun(id)));
    return { runs: views.filter((v): v is RunState => v !== undefined).sort(newestFirst), total: state.messages };
  }

  /**
   * What a run, an agent or a task spent from the budget hour `since` falls in to now (priced LLM calls only), from
   * the spend bucket the scheduler records: one read per hour of the window.
   */
  spend(kind: SpendKind, name: string, since: number, until = Date.now(), hourMs = budgetHourMs()): Promise<Spend> {
    return spendBetween(this.buckets.spend, kind, name, since, until, hourMs);
  }

  /**
   * Starts a new run whose stream begins with run `runId`'s events up to sequence `atSeq` (see planFork); the
   * scheduler carries on from there once every copied event is stored. Throws ForkError for a bad request.
   */
  async fork(runId: string, atSeq: number, opts: { message?: string; name?: string } = {}): Promise<{ runId: string; events: number }> {
    const events = await this.store.readRun(runId);
    if (events.length === 0) throw new ForkError(`run ${runId} not found (see: smallchain get runs)`);
    const forkId = newRunId();
    const planned = planFork(events, atSeq, forkId, Date.now(), { ...opts, newToken: () => randomBytes(16).toString("hex") });
    const copy = await this.copyLargeResults(planned, forkId);
    await this.store.appendDecision(copy, 0);
    return { runId: forkId, events: copy.length };
  }

  /** A fork owns its large results: each is copied under the fork, so removing the original takes nothing from it. */
  private async copyLargeResults(events: RunEvent[], forkId: string): Promise<RunEvent[]> {
    if (!events.some((e) => e.type === "ToolCallCompleted" && e.data.resultRef)) return events;
    const blobs = await Blobs.open(this.nc, this.names);
    return Promise.all(
      events.map(async (e): Promise<RunEvent> => {
        if (e.type !== "ToolCallCompleted" || !e.data.resultRef) return e;
        return { ...e, data: { ...e.data, ...(await blobs.keepResult(forkId, e.data.callId, await blobs.text(e.data.resultRef))) } };
      }),
    );
  }

  events(runId: string): Promise<RecordedEvent[]> {
    return this.store.readRun(runId);
  }

  /** The run's context window now: folded from its event stream (empty for a run without events). */
  async contextWindow(runId: string): Promise<ChatMessage[]> {
    return contextWindowOf(runId, await this.store.readRun(runId));
  }

  /** Resolves with the run's view once `until` holds (by default: the run has ended). */
  async waitForRun(runId: string, { timeoutMs = 60_000, until = isTerminal }: { timeoutMs?: number; until?: (s: RunState) => boolean } = {}): Promise<RunState> {
    const deadline = Date.now() + timeoutMs;
    // A watch can fail, or fall silent, while JetStream is briefly unavailable (a cluster electing a new
    // leader): watch again, and at least every 5 s (a new watch starts with the view's current value).
    while (Date.now() < deadline) {
      let watch;
      try {
        watch = await startWithin(this.buckets.runs.watch({ key: runId }), Math.min(5_000, deadline - Date.now()));
      } catch {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      // Starting the watch took too long (it waits for the stream's leader): try again, within the deadline.
      if (!watch) continue;
      const timer = setTimeout(() => watch.stop(), Math.max(0, Math.min(deadline, Date.now() + 5_000) - Date.now()));
      try {
        for await (const e of watch) {
          if (e.operation !== "PUT") continue;
          const view = decodeView(e.value);
          if (until(view)) return view;
        }
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      } finally {
        clearTimeout(timer);
        watch.stop();
      }
    }
    const last = await this.getRun(runId).catch(() => undefined);
    throw new Error(`run ${runId} did not reach the expected state within ${timeoutMs} ms (status: ${last?.status ?? "unknown"})`);
  }
}

/**
 * `starting` if it resolves within `ms`, else undefined; what it resolves to later is stopped. A KV watch is an
 * ordered push consumer, which retries its creation (up to 30 times, with backoff) while the bucket's stream
 * has no leader: starting one has no deadline of its own, and a cluster may be electing a leader for minutes.
 */
export async function startWithin<T extends { stop(): void }>(starting: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms), undefined)));
  try {
    const first = await Promise.race([starting, late]);
    if (first === undefined) void starting.then((w) => w.stop(), () => undefined);
    return first;
  } finally {
    clearTimeout(timer);
  }
}
