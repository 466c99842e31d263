import { JetStreamApiError, type JsMsg } from "@nats-io/jetstream";
import type { Logger } from "pino";
import type { RecordedEvent } from "../events.js";
import type { EventStore } from "../eventstore.js";
import { msFromEnv } from "../env.js";
import { KeyedQueue } from "../keyed-queue.js";
import type { ServiceMetrics } from "../metrics/metrics.js";
import { ackSoon } from "../nats/batch.js";
import type { Names } from "../names.js";
import type { Buckets } from "../nats/provision.js";
import { RunCache, type Delivery } from "./cache.js";
import { QUIET_SWEEP_EVERY_MS, QuietRuns } from "./quiet.js";
import { callArguments, findCall, initialState, isTerminal, type RunState } from "./state.js";
import { callKey, decodeView, encodeRunIndexEntry, encodeView, encodeWaitEntry, type WaitEntry } from "./views.js";

type WaitChange = [key: string, entry: WaitEntry | null];

/** How an event changes the list of calls waiting for people or the outside (`get approvals`). */
function waitChangesOf(prior: RunState, event: RecordedEvent): WaitChange[] {
  const base = (callId: string) => {
    const call = findCall(prior, callId);
    return {
      runId: event.runId,
      callId,
      tool: call?.tool ?? "",
      agent: prior.agentName,
      since: event.at,
      ...(prior.name !== undefined && { runName: prior.name }),
    };
  };
  const waitingIn = (callId: string) => {
    const status = findCall(prior, callId)?.status;
    return status === "awaitingApproval" || status === "awaitingHuman" || status === "awaitingCallback";
  };
  switch (event.type) {
    case "ToolCallAwaitingApproval": {
      const d = event.data;
      const args = callArguments(findCall(prior, d.callId)?.arguments ?? "");
      return [[callKey(event.runId, d.callId), { ...base(d.callId), kind: "approval", args, digest: d.digest, ...(d.dueAt !== undefined && { dueAt: d.dueAt }) }]];
    }
    case "HumanInputRequested": {
      const d = event.data;
      return [[callKey(event.runId, d.callId), { ...base(d.callId), kind: "human", question: d.question, ...(d.dueAt !== undefined && { dueAt: d.dueAt }) }]];
    }
    case "ToolCallAwaitingCallback": {
      const d = event.data;
      return [[callKey(event.runId, d.callId), { ...base(d.callId), kind: "callback", ...(d.dueAt !== undefined && { dueAt: d.dueAt }) }]];
    }
    case "ToolCallApproved":
    case "ToolCallRejected":
    case "HumanInputReceived":
    case "TimerFired":
    case "ToolCallCompleted":
    case "ToolCallFailed":
      return waitingIn(event.data.callId) ? [[callKey(event.runId, event.data.callId), null]] : NO_CHANGES;
    case "RunCompleted":
    case "RunFailed":
    case "RunCancelled":
      return prior.turn.phase === "tools" ? prior.turn.calls.filter((c) => waitingIn(c.callId)).map((c): WaitChange => [callKey(event.runId, c.callId), null]) : NO_CHANGES;
    default:
      return NO_CHANGES;
  }
}

const NO_CHANGES: WaitChange[] = [];

/** What folding a message's event did besides the state: the side entries to write, the status it moved from. */
class Folded {
  waitChanges = NO_CHANGES;
  requested = false;
  /** The state before the first event folded, if any was: the run's status moved from it. */
  first: RunState | undefined;
  get writes(): number {
    return this.waitChanges.length + (this.requested ? 1 : 0);
  }
  readonly sink = (prior: RunState, e: RecordedEvent): void => {
    const changes = waitChangesOf(prior, e);
    if (changes.length > 0) this.waitChanges = [...this.waitChanges, ...changes];
    this.requested ||= e.type === "RunRequested";
    this.first ??= prior;
  };
}

export type ProjectionOptions = {
  names: Names;
  store: EventStore;
  buckets: Pick<Buckets, "runs" | "waits">;
  log: Logger;
  /** Runs by status (see `smallchain_runs`). */
  metrics?: Pick<ServiceMetrics, "runTransition"> | undefined;
  /** How long a run's stored view may trail its events (default SC_VIEW_DELAY_MS, else 50 ms); see below. */
  viewDelayMs?: number;
};

/**
 * Folds every run's events into the KV views: `runs` (one run view per run), `waits` and the run index. Fed the
 * messages of one consumer of the run subjects, each with its event decoded: the projector's own consumer, or the
 * scheduler's when it projects (SC_SCHEDULER_PROJECTS, which saves the NATS server and the projector a delivery,
 * an ack and a decoding of every event). (Spend per budget hour is recorded by the scheduler, before the decision
 * that may read it.)
 *
 * Idempotent by sequence: a view records the last sequence folded into it, so a redelivered event changes
 * nothing. (The context window is not a view: whoever needs it folds it from the run's stream.)
 *
 * A busy run's view is written at most once per `viewDelayMs`, with everything folded by then, and its messages
 * are acked only once the view holding them is stored: a crash loses nothing, the events come back and are
 * folded again from the stored view. Writing the view at every event was most of the projector's work and a
 * third of what the NATS server stored per agent step.
 *
 * A view is written only over the revision it was folded from (KV's last-sequence guard), so replicas racing
 * on one run never store an older view over a newer one: the loser compares (see resolveConflict).
 */
export class Projection {
  private readonly queue = new KeyedQueue();
  /** Runs whose view in memory is ahead of the stored one, with the messages it holds (acked once it is stored). */
  private readonly dirty = new Map<string, { state: RunState; msgs: JsMsg[] }>();
  /** Views being stored now (one write per run at a time): an event folded already waits for it too. */
  private readonly writing = new Set<string>();
  /** The stored revision of each view held in memory: the next write expects it (0: no view yet). */
  private readonly revisions = new Map<string, number>();
  private readonly cache: RunCache;
  private readonly delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Runs held here that have not ended: a quiet one is read past its view, and what is found is stored (see sweep). */
  private readonly quiet = new QuietRuns();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly opts: ProjectionOptions) {
    this.delayMs = opts.viewDelayMs ?? msFromEnv("SC_VIEW_DELAY_MS", 50);
    this.cache = new RunCache(opts.store, opts.log, {
      // A run's first event, delivered for the first time: there is no view yet (should there be one, the write
      // expecting none finds it, and the two are compared: see resolveConflict).
      loadInitial: async (runId, firstEvent) => {
        if (firstEvent) {
          this.revisions.set(runId, 0);
          return initialState(runId);
        }
        const entry = await opts.buckets.runs.get(runId);
        this.revisions.set(runId, entry?.revision ?? 0);
        return entry?.operation === "PUT" ? decodeView(entry.value) : initialState(runId);
      },
      max: 20_000,
    });
    this.sweeper = setInterval(() => this.sweep(), QUIET_SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  /** Call with each message's delivery info, in the order received (see RunCache.delivered), before its `project`. */
  delivered(info: Delivery): void {
    this.cache.delivered(info);
  }

  /**
   * Folds the event a message brought; the message is acked once a stored view holds it. A throw (or a rejection)
   * leaves it unacked (it comes back). An event that is the next of a run held here, with nothing of the run
   * queued, is folded at once, without a promise: the common case, where the scheduler feeds its deliveries.
   */
  project(event: RecordedEvent, msg: JsMsg): Promise<void> | undefined {
    const runId = event.runId;
    if (!this.queue.busy(runId)) {
      const before = this.cache.get(runId);
      const folded = new Folded();
      try {
        const state = before && this.cache.foldHeld(event, folded.sink);
        if (state) {
          if (folded.writes === 0) return this.settle(runId, before, state, folded, msg);
          return this.queue.run(runId, () => this.settleWriting(runId, before, state, folded, msg));
        }
      } catch (err) {
        this.cache.drop(runId);
        throw err;
      }
    }
    return this.queue.run(runId, async () => {
      const before = this.cache.get(runId);
      const folded = new Folded();
      let state: RunState;
      try {
        state = await this.cache.withEvent(event, folded.sink, msg.info.deliveryCount === 1);
      } catch (err) {
        this.cache.drop(runId);
        throw err;
      }
      await this.settleWriting(runId, before, state, folded, msg);
    });
  }

  /** The side entries of what was folded: the waits, the run index. */
  private async writeSides(runId: string, state: RunState, folded: Folded): Promise<void> {
    const { names: n, buckets, store } = this.opts;
    for (const [key, entry] of folded.waitChanges) {
      if (entry) await buckets.waits.put(key, encodeWaitEntry(entry));
      else await buckets.waits.delete(key);
    }
    if (folded.requested) {
      await store.publisher.publish(n.runIndexSubject, encodeRunIndexEntry({ runId, at: state.createdAt }), { msgID: `index:${runId}` });
    }
  }

  /** Writes the side entries of what was folded, then as `settle`. */
  private async settleWriting(runId: string, before: RunState | undefined, state: RunState, folded: Folded, msg: JsMsg): Promise<void> {
    try {
      await this.writeSides(runId, state, folded);
    } catch (err) {
      // The fold in memory may be ahead of what was stored: forget it, so the redelivered event is folded again
      // from the stored view (proven against the stream) and its side entries and view are written then (else
      // it would look done already, or the run's next event would be folded past it).
      this.cache.drop(runId);
      throw err;
    }
    this.settle(runId, before, state, folded, msg);
  }

  /** The message waits for the view holding `state` to be stored, unless one is stored already. */
  private settle(runId: string, before: RunState | undefined, state: RunState, folded: Folded, msg: JsMsg): undefined {
    if (folded.first) this.opts.metrics?.runTransition(folded.first.lastSeq === 0 ? undefined : folded.first.status, state.status);
    if (isTerminal(state)) this.quiet.forget(runId);
    else this.quiet.touch(runId);
    if (state !== before || this.dirty.has(runId) || this.writing.has(runId)) {
      // The view to store holds this event: the event is acked when it is stored.
      this.hold(runId, state, msg);
      return;
    }
    // Folded before, and its view stored since.
    ackSoon(msg);
  }

  /**
   * `state` is the view to store next, holding `msg`'s event (acked once it is stored). (An entry in `dirty` is not
   * being written: a write takes its entry out first.)
   */
  private hold(runId: string, state: RunState, msg?: JsMsg): void {
    const pending = this.dirty.get(runId);
    if (pending) {
      pending.state = state;
      if (msg) pending.msgs.push(msg);
    } else {
      this.dirty.set(runId, { state, msgs: msg ? [msg] : [] });
    }
    this.schedule();
  }

  /** Stores every view folded so far (nothing waits for a redelivery); call once the messages stopped coming. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweeper);
    clearTimeout(this.timer);
    await this.flush();
  }

  /**
   * Reads each quiet run past what is folded of it (see QuietRuns), and stores what it finds: a safety net for an
   * event no delivery brings, as the scheduler has.
   */
  private sweep(): void {
    for (const [runId] of this.quiet.due((id) => this.cache.get(id))) {
      void this.queue
        .run(runId, async () => {
          const before = this.cache.get(runId);
          if (!before) return;
          const folded = new Folded();
          let state: RunState;
          try {
            state = await this.cache.catchUp(before, folded.sink);
            if (!folded.first) return;
            this.opts.log.warn({ runId, from: before.lastSeq, to: state.lastSeq }, "found events of a quiet run that no delivery brought; storing its view with them");
            await this.writeSides(runId, state, folded);
          } catch (err) {
            this.cache.drop(runId);
            throw err;
          }
          this.opts.metrics?.runTransition(folded.first.lastSeq === 0 ? undefined : folded.first.status, state.status);
          if (isTerminal(state)) this.quiet.forget(runId);
          this.hold(runId, state);
        })
        .catch((err: unknown) => this.opts.log.warn({ err, runId }, "checking a quiet run's view failed; trying again later"));
    }
  }

  private schedule(): void {
    if (this.timer === undefined && !this.stopped) this.timer = setTimeout(() => void this.flush(), this.delayMs);
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    const batch = [...this.dirty].filter(([runId]) => !this.writing.has(runId));
    for (const [runId] of batch) this.dirty.delete(runId);
    // A run whose previous write is still out waits for the next round.
    if (this.dirty.size > 0) this.schedule();
    await Promise.all(batch.map(([runId, entry]) => this.write(runId, entry)));
  }

  /** Keeps a fold whose view was not stored for the next write, with whatever was folded since. */
  private keep(runId: string, entry: { state: RunState; msgs: JsMsg[] }): void {
    const later = this.dirty.get(runId);
    this.dirty.set(runId, { state: later?.state ?? entry.state, msgs: [...entry.msgs, ...(later?.msgs ?? [])] });
    this.schedule();
  }

  /**
   * Another replica (of the projector, or a scheduler that projects) stored a view of this run since we loaded
   * it. Every stored view holds every event up to its last sequence, ours too: if the stored one reaches at least
   * as far as the newest fold we hold, our messages are in it (acked, and the run is loaded from it next time);
   * otherwise ours is newer and is stored over it. No message comes back: with schedulers that project, one
   * would be handled again.
   */
  private async resolveConflict(runId: string, entry: { state: RunState; msgs: JsMsg[] }): Promise<void> {
    const stored = await this.opts.buckets.runs.get(runId);
    const view = stored?.operation === "PUT" ? decodeView(stored.value) : undefined;
    const newest = this.dirty.get(runId)?.state ?? entry.state;
    if (view && view.lastSeq >= newest.lastSeq) {
      this.opts.log.info({ runId, stored: view.lastSeq, ours: newest.lastSeq }, "the run's view was stored elsewhere meanwhile, holding what we folded");
      const later = this.dirty.get(runId);
      this.dirty.delete(runId);
      this.cache.drop(runId);
      this.revisions.delete(runId);
      for (const m of [...entry.msgs, ...(later?.msgs ?? [])]) ackSoon(m);
      return;
    }
    this.opts.log.info({ runId, stored: view?.lastSeq, ours: newest.lastSeq }, "the run's view was stored elsewhere meanwhile, behind ours; storing ours over it");
    this.revisions.set(runId, stored?.revision ?? 0);
    this.keep(runId, entry);
  }

  private async write(runId: string, entry: { state: RunState; msgs: JsMsg[] }): Promise<void> {
    const { names: n, store, log } = this.opts;
    const { dirty, revisions, cache } = this;
    this.writing.add(runId);
    try {
      const expected = revisions.get(runId);
      // A KV put is a publish on the bucket's subject; the event store's publisher does it without per-request overhead.
      const ack = await store.publisher.publish(
        `$KV.${n.runsBucket}.${runId}`,
        encodeView(entry.state),
        expected === undefined ? {} : { expectedLastSubjectSequence: expected },
      );
      revisions.set(runId, ack.seq);
      for (const m of entry.msgs) ackSoon(m);
      // An ended run is done with: a late event (a cancel after the end) loads its view again.
      if (isTerminal(entry.state) && !dirty.has(runId)) {
        revisions.delete(runId);
        cache.drop(runId);
      }
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === 10071) {
        try {
          await this.queue.run(runId, () => this.resolveConflict(runId, entry));
          return;
        } catch (failed) {
          err = failed;
        }
      }
      // Kept for the next write: the fold in memory is right, storing it failed (NATS is away). Should we die
      // first, the events were not acked and come back.
      log.warn({ runId, err: (err as Error).message }, "storing a run view failed; trying again");
      this.keep(runId, entry);
    } finally {
      this.writing.delete(runId);
    }
  }
}
