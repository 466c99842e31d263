import {
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StoredMsg,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { DecodeError, decode, encode } from "./codec.js";
import { JsPublisher } from "./nats/publisher.js";
import { ConcurrencyError } from "./errors.js";
import { RunEvent, type RecordedEvent } from "./events.js";
import { isRunId } from "./ids.js";
import type { Names } from "./names.js";

export type AppendResult = { seq: number; duplicate: boolean };

/** Up to this many events a run is read with direct gets; longer runs with an ordered consumer. */
const DIRECT_READ_LIMIT = 8;

/**
 * The run streams: one subject per run in the EVENTS stream. Every append carries the event's deterministic id
 * as Nats-Msg-Id (a retried writer appends nothing new); decisions also carry the expected last sequence.
 */
export class EventStore {
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
   * Appends one event. With `expectedLastSeq` it only lands if the run's newest event has that sequence
   * (0: the run has no event yet), else it throws ConcurrencyError and nothing is written.
   */
  async append(event: RunEvent, expectedLastSeq?: number): Promise<AppendResult> {
    try {
      const ack = await this.publisher.publish(this.names.runSubject(event.runId), encode(event), {
        msgID: event.id,
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

  /**
   * Appends a decision, every event guarded by the sequence of the one before it: nothing from elsewhere can
   * land between them unseen, so the decider's state is exactly the stream's prefix. Stops at a duplicate
   * (another scheduler recorded it) and throws ConcurrencyError if the run moved on.
   */
  async appendDecision(events: RunEvent[], expectedLastSeq: number): Promise<AppendResult[]> {
    const results: AppendResult[] = [];
    let last = expectedLastSeq;
    for (const event of events) {
      const r = await this.append(event, last);
      results.push(r);
      if (r.duplicate) break;
      last = r.seq;
    }
    return results;
  }

  /** The run's first valid event at or after `fromSeq`, or null. Invalid ones are skipped (and reported). */
  async nextEvent(runId: string, fromSeq: number, onInvalid?: (err: DecodeError, seq: number) => void): Promise<RecordedEvent | null> {
    for (let seq = fromSeq; ; ) {
      const sm = await this.jsm.direct.getMessage(this.names.eventsStream, { seq, next_by_subj: this.names.runSubject(runId) });
      if (!sm) return null;
      try {
        return this.decodeStored(sm);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        onInvalid?.(err, sm.seq);
        seq = sm.seq + 1;
      }
    }
  }

  /** Every event of the run from `fromSeq` on, in order. Undecodable events are skipped (and reported). */
  async readRun(runId: string, fromSeq = 1, onInvalid?: (err: DecodeError, seq: number) => void): Promise<RecordedEvent[]> {
    const events: RecordedEvent[] = [];
    let seq = fromSeq;
    for (let i = 0; i < DIRECT_READ_LIMIT; i++) {
      const sm = await this.jsm.direct.getMessage(this.names.eventsStream, { seq, next_by_subj: this.names.runSubject(runId) });
      if (!sm) return events;
      this.collect(events, () => this.decodeStored(sm), sm.seq, onInvalid);
      seq = sm.seq + 1;
    }
    const consumer = await this.js.consumers.get(this.names.eventsStream, {
      filter_subjects: this.names.runSubject(runId),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: seq,
    });
    const first = await this.jsm.direct.getMessage(this.names.eventsStream, { seq, next_by_subj: this.names.runSubject(runId) });
    if (!first) return events;
    const messages = await consumer.consume({ max_messages: 1000 });
    try {
      for await (const m of messages) {
        this.collect(events, () => this.decodeMsg(m), m.seq, onInvalid);
        if (m.info.pending === 0) break;
      }
    } finally {
      await messages.close();
    }
    return events;
  }

  private collect(
    into: RecordedEvent[],
    read: () => RecordedEvent,
    seq: number,
    onInvalid?: (err: DecodeError, seq: number) => void,
  ): void {
    try {
      into.push(read());
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      onInvalid?.(err, seq);
    }
  }

  /** Decodes an event delivered by a consumer; throws DecodeError for anything that is not a valid event of that run. */
  decodeMsg(msg: JsMsg): RecordedEvent {
    return this.decodeAt(msg.subject, msg.data, msg.seq);
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

  private decodeStored(sm: StoredMsg): RecordedEvent {
    return this.decodeAt(sm.subject, sm.data, sm.seq);
  }

  private decodeAt(subject: string, data: Uint8Array, seq: number): RecordedEvent {
    const event = decode(RunEvent, data, `event ${seq} on ${subject}`);
    const runId = this.names.runIdOfSubject(subject);
    if (event.runId !== runId) throw new DecodeError(`event ${seq} on ${subject} names run ${event.runId}`);
    // A subject token may hold what a run id may not (and a KV key cannot): such a "run" is no run of ours.
    if (!isRunId(runId)) throw new DecodeError(`event ${seq} on ${subject}: run id ${JSON.stringify(runId)} is not 1-64 letters, digits, '_' or '-'`);
    return { ...event, seq };
  }
}
