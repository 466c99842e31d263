import {
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type MsgRequest,
  type StoredMsg,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { DecodeError, decodeTyped, encodeChecked } from "./codec.js";
import { JsPublisher } from "./nats/publisher.js";
import { readRange } from "./nats/consume.js";
import { ConcurrencyError, RetryableError } from "./errors.js";
import { RunEvent, isEventShaped, type RecordedEvent } from "./events.js";
import { isRunId } from "./ids.js";
import { currentTraceparent } from "./tracing.js";
import { Header, laneOfSubject, type Lane, type Names } from "./names.js";

/**
 * A command, or a decision carrying one (`kind`: whose work it is, see `Sc-Command`), is typed and continues the active
 * span's trace (when tracing is on).
 */
export function commandHeaders(kind?: "llm" | "tool"): Record<string, string> {
  const traceparent = currentTraceparent();
  return { ...TYPED, ...(kind && { [Header.Command]: kind }), ...(traceparent && { traceparent }) };
}

/** Every event this store appends was built by typed code: its readers check its envelope only (see `decodeTyped`). */
const TYPED = { [Header.Typed]: "1" } as const;

/** Whether a message's writer declares it typed. */
export function isTyped(headers: { get(key: string): string } | undefined): boolean {
  return headers?.get(Header.Typed) === "1";
}

/** Whose work a decision carrying a command is: the worker kind its `Sc-Command` header names. */
function commandKind(event: RunEvent): "llm" | "tool" | undefined {
  return event.type === "LLMRequested" ? "llm" : event.type === "ToolCallRequested" ? "tool" : undefined;
}

export type AppendResult = { seq: number; duplicate: boolean };

/** Up to this many events a run is read with direct gets; longer runs with an ordered consumer. */
const DIRECT_READ_LIMIT = 8;

/** Reports an event that could not be decoded; `lane`: the run's lane it is on (undefined: the results). */
export type OnInvalid = (err: DecodeError, seq: number, lane: Lane | undefined) => void;

/**
 * The run streams: four subjects per run in the EVENTS stream, three lanes of decisions and inputs, one of the
 * workers' results (see Names.runSubject). Every append carries the event's deterministic id as Nats-Msg-Id (a retried
 * writer appends nothing new); decisions and inputs also carry the expected last sequence of their lane.
 */
export class EventStore {
  /** How long a read of a long run waits for its next event before it gives up (to be tried again). */
  readStallMs = 5_000;

  private constructor(
    readonly names: Names,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    /** Shared with the process's other hot-path writers (commands, views). */
    readonly publisher: JsPublisher,
  ) {}

  static async open(nc: NatsConnection, names: Names): Promise<EventStore> {
    return new EventStore(names, jetstream(nc), await jetstreamManager(nc), new JsPublisher(nc));
  }

  /**
   * Appends one event to one of the run's lanes (`.ev` by default). With `expectedLastSeq` it only lands if that
   * lane's newest event has that sequence (0: none yet), else it throws ConcurrencyError and nothing is written.
   */
  async append(event: RunEvent, expectedLastSeq?: number, lane: Lane = "ev"): Promise<AppendResult> {
    try {
      const kind = event.command && commandKind(event);
      // A worker reads its kind's lane only: a command anywhere else would never be carried out.
      if (kind && kind !== lane) throw new Error(`event ${event.id} carries a ${kind} command but was to go to the ${lane} lane`);
      const ack = await this.publisher.publish(this.names.runLaneSubject(event.runId, lane), encodeChecked(RunEvent, event, `event ${event.id}`), {
        msgID: event.id,
        headers: kind ? commandHeaders(kind) : TYPED,
        ...(expectedLastSeq !== undefined && { expectedLastSubjectSequence: expectedLastSeq }),
      });
      return { seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === 10071) {
        throw new ConcurrencyError(`run ${event.runId} moved past sequence ${expectedLastSeq}`, { cause: err });
      }
      throw err;
    }
  }

  /** Appends a worker's result of a call to the run's results subject: unguarded, deduplicated by its id. */
  async appendResult(event: RunEvent): Promise<AppendResult> {
    const ack = await this.publisher.publish(this.names.runResultsSubject(event.runId), encodeChecked(RunEvent, event, `event ${event.id}`), { msgID: event.id, headers: TYPED });
    return { seq: ack.seq, duplicate: ack.duplicate };
  }

  /**
   * Appends a decision to one lane, every event guarded by the sequence of the one before it: nothing from elsewhere
   * can land on the lane between them unseen. Stops at a duplicate (another scheduler recorded it) and throws
   * ConcurrencyError if the run moved on.
   */
  async appendDecision(events: RunEvent[], expectedLastSeq: number, lane: Lane = "ev"): Promise<AppendResult[]> {
    const results: AppendResult[] = [];
    let last = expectedLastSeq;
    for (const event of events) {
      const r = await this.append(event, last, lane);
      results.push(r);
      if (r.duplicate) break;
      last = r.seq;
    }
    return results;
  }

  /**
   * Whether a worker's result of the run landed at a sequence in [fromSeq, beforeSeq): a decider that recorded
   * its decision at `beforeSeq` over a state ending before `fromSeq` has not seen it (the guard covers decisions,
   * not results).
   */
  async resultBetween(runId: string, fromSeq: number, beforeSeq: number): Promise<boolean> {
    if (fromSeq >= beforeSeq) return false;
    const sm = await this.get(this.names.runResultsSubject(runId), fromSeq);
    return sm !== null && sm.seq < beforeSeq;
  }

  /**
   * The run's first valid event at or after `fromSeq`, or null. Invalid ones are skipped (and reported).
   * `stored`: a sequence known to be stored already (a delivered event's), up to which the read needs no second look.
   */
  async nextEvent(runId: string, fromSeq: number, onInvalid?: OnInvalid, stored = fromSeq - 1): Promise<RecordedEvent | null> {
    const heads = await this.heads(runId, fromSeq, stored);
    for (;;) {
      const sm = await heads.next();
      if (!sm) return null;
      try {
        return this.decodeStored(sm);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        onInvalid?.(err, sm.seq, laneOfSubject(sm.subject));
        await heads.advance(sm);
      }
    }
  }

  /** Every event of the run from `fromSeq` on, in order. Undecodable events are skipped (and reported). */
  async readRun(runId: string, fromSeq = 1, onInvalid?: OnInvalid): Promise<RecordedEvent[]> {
    const events: RecordedEvent[] = [];
    const heads = await this.heads(runId, fromSeq);
    let seq = fromSeq;
    for (let i = 0; i < DIRECT_READ_LIMIT; i++) {
      const sm = await heads.next();
      if (!sm) return events;
      this.collect(events, () => this.decodeStored(sm), sm.seq, sm.subject, onInvalid);
      seq = sm.seq + 1;
      await heads.advance(sm);
    }
    if (!(await heads.next())) return events;
    // A long run: the rest through a consumer of all its subjects, up to the newest event stored now. The consumer's
    // pending count alone cannot end the read: on NATS 2.9 it can be short for a filter with a wildcard.
    const end = Math.max(...(await Promise.all(this.names.runSubjects(runId).map((s) => this.lastSeqOn(s)))));
    const consumer = await this.js.consumers.get(this.names.eventsStream, {
      filter_subjects: this.names.runEventsSubject(runId),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: seq,
    });
    const messages = await consumer.consume({ max_messages: 1000 });
    // A read that stalls or ends before the newest event fails, to be tried again: never part of a run as all of it.
    const outcome = await readRange(messages, this.readStallMs, async (m) => {
      this.collect(events, () => this.decodeMsg(m), m.seq, m.subject, onInvalid);
      seq = m.seq + 1;
      return m.seq >= end || (m.info.pending === 0 && !(await this.anyAfter(runId, m.seq)));
    });
    if (outcome !== "done") {
      const why = outcome === "stalled" ? `nothing came for ${this.readStallMs} ms` : "the read ended";
      throw new RetryableError(`reading run ${runId}: ${why} before #${end} (at #${seq}); read again later`, 1000);
    }
    return events;
  }

  /** Whether the run has an event stored after `seq`. */
  async anyAfter(runId: string, seq: number): Promise<boolean> {
    return (await (await this.heads(runId, seq + 1)).next()) !== null;
  }

  /**
   * The next stored message of each of the run's four subjects, to read them merged in stream order. Looked up by
   * their literal subjects, from the stream's leader: on NATS 2.9 a lookup by wildcard can miss a message (a
   * replica that restarted), and two replicas lagging differently could show one subject's newer events without
   * another's older ones.
   *
   * A subject's message found is the first there from its cursor on: nothing older can be stored after it. "None" is
   * only true of what was stored when it was asked: a message of another subject newer than anything seen by then
   * may have been stored after an event of this one, so this one is asked again before it is passed over.
   */
  private async heads(runId: string, fromSeq: number, stored = fromSeq - 1) {
    const subjects = this.names.runSubjects(runId);
    const next: (StoredMsg | null)[] = subjects.map(() => null);
    const cursor = subjects.map(() => fromSeq);
    /** For a subject that had no message: the newest sequence known stored before it was asked. */
    const askedAfter = subjects.map(() => 0);
    let known = stored;
    const fetch = async (i: number, seq: number): Promise<void> => {
      const before = known;
      const sm = await this.get(subjects[i]!, seq);
      cursor[i] = seq;
      next[i] = sm;
      askedAfter[i] = before;
      if (sm) known = Math.max(known, sm.seq);
    };
    await Promise.all(subjects.map((_, i) => fetch(i, fromSeq)));
    return {
      next: async (): Promise<StoredMsg | null> => {
        for (;;) {
          let i = -1;
          for (let j = 0; j < next.length; j++) if (next[j] && (i < 0 || next[j]!.seq < next[i]!.seq)) i = j;
          if (i < 0) return null;
          const sm = next[i]!;
          // A subject that had nothing when asked, before this message was known to be stored: asked again first.
          const unsure = next.findIndex((m, j) => !m && sm.seq > askedAfter[j]!);
          if (unsure < 0) return sm;
          await fetch(unsure, cursor[unsure]!);
        }
      },
      advance: async (sm: StoredMsg): Promise<void> => {
        await fetch(next.findIndex((m) => m?.seq === sm.seq), sm.seq + 1);
      },
    };
  }

  /** The sequence of the newest message on `subject` (0: none). */
  private async lastSeqOn(subject: string): Promise<number> {
    return (await this.jsm.streams.getMessage(this.names.eventsStream, { last_by_subj: subject }))?.seq ?? 0;
  }

  /** The first message on `subject` at or after `seq`, from the stream's leader (NATS 2.9's STREAM.MSG.GET takes `next_by_subj`; the client's type omits it). */
  private async get(subject: string, seq: number): Promise<StoredMsg | null> {
    return this.jsm.streams.getMessage(this.names.eventsStream, { seq, next_by_subj: subject } as unknown as MsgRequest);
  }

  private collect(
    into: RecordedEvent[],
    read: () => RecordedEvent,
    seq: number,
    subject: string,
    onInvalid?: OnInvalid,
  ): void {
    try {
      into.push(read());
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      onInvalid?.(err, seq, laneOfSubject(subject));
    }
  }

  /** Decodes an event delivered by a consumer; throws DecodeError for anything that is not a valid event of that run. */
  decodeMsg(msg: JsMsg): RecordedEvent {
    return this.decodeAt(msg.subject, msg.data, msg.seq, isTyped(msg.headers));
  }

  /**
   * For a delivered event declared typed, whose envelope alone was checked (see `decodeTyped`): the error of its whole
   * check, should it fail (a consumer asks when handling the event threw); undefined otherwise.
   */
  invalid(msg: JsMsg): DecodeError | undefined {
    if (!isTyped(msg.headers)) return undefined;
    try {
      this.decodeAt(msg.subject, msg.data, msg.seq, false);
      return undefined;
    } catch (err) {
      return err instanceof DecodeError ? err : undefined;
    }
  }

  /** Decodes a delivered event; an invalid one is logged and terminated (it can never become valid) and null returned. */
  decodeOrTerm(msg: JsMsg, log: Logger): RecordedEvent | null {
    try {
      return this.decodeMsg(msg);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      log.warn({ subject: msg.subject, seq: msg.seq, err: err.message }, "ignoring an invalid event");
      msg.term();
      return null;
    }
  }

  /** Decodes a stored message as `decodeMsg` does a delivered one. */
  decodeStored(sm: StoredMsg): RecordedEvent {
    return this.decodeAt(sm.subject, sm.data, sm.seq, isTyped(sm.header));
  }

  private decodeAt(subject: string, data: Uint8Array, seq: number, typed: boolean): RecordedEvent {
    const result = subject.endsWith(".res");
    const lane = laneOfSubject(subject);
    if (!result && !lane) throw new DecodeError(`event ${seq} on ${subject}: a run's events are on <run>.ev, <run>.llm, <run>.tool and <run>.res only`);
    const event = decodeTyped(RunEvent, data, `event ${seq} on ${subject}`, typed, isEventShaped);
    const runId = this.names.runIdOfSubject(subject);
    if (event.runId !== runId) throw new DecodeError(`event ${seq} on ${subject} names run ${event.runId}`);
    // A subject token may hold what a run id may not (and a KV key cannot): such a "run" is no run of ours.
    if (!isRunId(runId)) throw new DecodeError(`event ${seq} on ${subject}: run id ${JSON.stringify(runId)} is not 1-64 letters, digits, '_' or '-'`);
    // The decoded object is this read's own: it takes its sequence in place rather than being copied whole.
    if (result) return Object.assign(event, { seq, result: true as const });
    return lane === "ev" ? Object.assign(event, { seq }) : Object.assign(event, { seq, lane: lane! });
  }
}
