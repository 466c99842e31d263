import type { Logger } from "pino";
import type { EventStore } from "../eventstore.js";
import type { RecordedEvent } from "../events.js";
import type { Lane } from "../names.js";
import { evolve, initialState, pastInvalid, type RunState } from "./state.js";

/** Sees every event folded, with the state before it (the projector writes the messages it adds). */
export type FoldSink = (before: RunState, event: RecordedEvent) => void;

export type RunCacheOptions = {
  /**
   * Where a run not in memory starts from: by default nothing, then its whole stream is folded. `firstEvent`: the
   * event to fold is the run's first (a RunRequested on its first delivery), so there is likely nothing to load.
   */
  loadInitial?: (runId: string, firstEvent: boolean) => Promise<RunState>;
  max?: number;
};

/** What the consumer says of a delivered message (a JsMsg's `info`). */
export type Delivery = { deliverySequence: number; streamSequence: number; deliveryCount: number };

/**
 * Run states held in memory by the process that folds them, loaded from the run's stream on a miss.
 * The stream stays the truth: an event from elsewhere is folded only after checking that nothing came
 * between it and what we hold (another replica may have handled that), else we catch up from the stream.
 *
 * An event is trusted to be the next one of a held state without a read only when both hold:
 * - the state was proven in the current generation (no hole in the consumer's delivery sequence since), and
 *   nothing of the run was dropped since (a failed handler drops it);
 * - the state reaches at least the stream sequence just before the first message this generation received on
 *   its first delivery. Messages from that one on come here, in stream order; older ones may have gone to a
 *   replica or to an earlier incarnation of this process that died holding them, and come back as
 *   redeliveries (with consumer sequences that follow on without a hole) after newer events of their run.
 */
export class RunCache {
  private readonly states = new Map<string, RunState>();
  /** The generation in which each held state was last proven complete. */
  private readonly verified = new Map<string, number>();
  private generation = 0;
  private lastDelivery: number | undefined;
  /** The stream sequence of the first first delivery of the current generation: every newer message comes here in order. */
  private orderedFrom: number | undefined;
  private readonly max: number;

  constructor(
    private readonly store: EventStore,
    private readonly log: Logger,
    private readonly opts: RunCacheOptions = {},
  ) {
    this.max = opts.max ?? 50_000;
  }

  get(runId: string): RunState | undefined {
    return this.states.get(runId);
  }

  set(state: RunState): void {
    this.states.delete(state.runId);
    this.states.set(state.runId, state);
    if (this.states.size > this.max) {
      const oldest = this.states.keys().next().value;
      if (oldest !== undefined) this.drop(oldest);
    }
  }

  drop(runId: string): void {
    this.states.delete(runId);
    this.verified.delete(runId);
  }

  /**
   * Keeps the run's state but proves it again before folding its next event: call when handling one of its
   * events failed, so that event (to be redelivered) cannot be passed over by the next one.
   */
  distrust(runId: string): void {
    this.verified.delete(runId);
  }

  /**
   * Call with each message's delivery info, in the order received. While consumer delivery sequences follow
   * each other without a hole, this process sees every message the consumer hands out, and new messages (first
   * deliveries) in stream order. A hole means another replica (or a lost buffer) took some: every held state
   * must prove itself again before it is trusted. Redeliveries carry new consumer sequences (no hole), but may
   * bring an event older than what was folded since: see the class comment.
   */
  delivered(info: Delivery): void {
    if (this.lastDelivery !== undefined && info.deliverySequence !== this.lastDelivery + 1) {
      this.generation++;
      this.orderedFrom = undefined;
    }
    this.lastDelivery = info.deliverySequence;
    if (this.orderedFrom === undefined && info.deliveryCount === 1) this.orderedFrom = info.streamSequence;
  }

  /** Folds events this process itself recorded (it knows nothing came between). */
  record(state: RunState, events: RecordedEvent[], sink?: FoldSink): RunState {
    const next = events.reduce((s, e) => this.fold(s, e, sink), state);
    this.set(next);
    return next;
  }

  /**
   * The run's state including `event` when that needs no read: the run is held, and `event` is folded already or
   * trusted to be its next (see the class comment). Otherwise undefined: `withEvent` reads what it must.
   */
  foldHeld(event: RecordedEvent, sink?: FoldSink): RunState | undefined {
    const cached = this.states.get(event.runId);
    if (!cached || cached.lastSeq === 0) return undefined;
    if (event.seq <= cached.lastSeq) return cached;
    return this.trusted(cached) ? this.record(cached, [event], sink) : undefined;
  }

  /**
   * The run's state including `event` (and anything before it). `firstDelivery`: the consumer delivers `event`
   * for the first time (a redelivered RunRequested may belong to a run that moved on since).
   */
  async withEvent(event: RecordedEvent, sink?: FoldSink, firstDelivery = false): Promise<RunState> {
    let cached = this.states.get(event.runId);
    if (!cached) {
      if (!this.opts.loadInitial) {
        if (event.type !== "RunRequested") return this.catchUp(initialState(event.runId), sink);
        cached = initialState(event.runId);
      } else {
        cached = await this.opts.loadInitial(event.runId, firstDelivery && event.type === "RunRequested");
      }
    }
    // A run's first event needs no read: nothing comes before it (it is appended expecting sequence 0).
    if (cached.lastSeq === 0 && event.type === "RunRequested") {
      this.verified.set(event.runId, this.generation);
      return this.record(cached, [event], sink);
    }
    if (event.seq <= cached.lastSeq) return cached;
    if (this.trusted(cached)) return this.record(cached, [event], sink);
    const generation = this.generation;
    const next = await this.store.nextEvent(event.runId, cached.lastSeq + 1, this.reportInvalid(event.runId), event.seq);
    if (next && next.seq === event.seq) {
      this.verified.set(event.runId, generation);
      return this.record(cached, [event], sink);
    }
    return this.catchUp(cached, sink);
  }

  /** Folds every event after the state's last one. */
  async catchUp(state: RunState, sink?: FoldSink): Promise<RunState> {
    const generation = this.generation;
    const skipped: { seq: number; lane: Lane | undefined }[] = [];
    const report = this.reportInvalid(state.runId);
    const events = await this.store.readRun(state.runId, state.lastSeq + 1, (err, seq, lane) => {
      skipped.push({ seq, lane });
      report(err, seq);
    });
    const next = this.record(state, events, sink);
    this.verified.set(state.runId, generation);
    // An invalid event still occupies its place in the stream: decisions must be guarded past it.
    const past = skipped.reduce((s, { seq, lane }) => pastInvalid(s, seq, lane), next);
    if (past === next) return next;
    this.set(past);
    return past;
  }

  /** Whether the next event of the run delivered here is the next one in its stream (see the class comment). */
  private trusted(state: RunState): boolean {
    return this.verified.get(state.runId) === this.generation && this.orderedFrom !== undefined && state.lastSeq >= this.orderedFrom - 1;
  }

  private reportInvalid(runId: string) {
    return (err: Error, seq: number) => this.log.warn({ runId, seq, err: err.message }, "skipping an invalid event in the run's stream");
  }

  private fold(state: RunState, event: RecordedEvent, sink?: FoldSink): RunState {
    if (event.seq <= state.lastSeq) return state;
    sink?.(state, event);
    return evolve(state, event);
  }
}
