import { JetStreamApiError, type ApiError } from "@nats-io/jetstream";
import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { RetryableError } from "../errors.js";
import { sendSoon } from "./batch.js";

export type PublishAck = { stream: string; seq: number; duplicate: boolean };
export type PublishOptions = { msgID?: string; expectedLastSubjectSequence?: number; headers?: Record<string, string> };

type Waiter = { resolve: (ack: PublishAck) => void; reject: (err: Error) => void; at: number };

/**
 * Publishes to JetStream and awaits the PubAck over one reply subscription shared by all requests.
 * nats.js `js.publish` builds a request per message (an inbox entry, a timer and two Error objects for
 * their stack traces); on the hot path that was a tenth of a service's CPU. Errors are JetStream's own
 * (JetStreamApiError with its code), a missing stream is one too, and a PubAck that never comes is a
 * RetryableError after `timeoutMs`.
 */
export class JsPublisher {
  private readonly prefix = `${createInbox()}.`;
  private readonly waiting = new Map<number, Waiter>();
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = 10_000,
  ) {
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (_err, msg) => this.onReply(msg) });
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, timeoutMs));
    this.sweeper.unref();
  }

  publish(subject: string, data: Uint8Array, opts: PublishOptions = {}): Promise<PublishAck> {
    const id = ++this.next;
    const h = headers();
    if (opts.msgID !== undefined) h.set("Nats-Msg-Id", opts.msgID);
    if (opts.expectedLastSubjectSequence !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(opts.expectedLastSubjectSequence));
    for (const [k, v] of Object.entries(opts.headers ?? {})) h.set(k, v);
    return new Promise<PublishAck>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, at: Date.now() });
      sendSoon(() => {
        try {
          this.nc.publish(subject, data, { reply: `${this.prefix}${id}`, headers: h });
        } catch (err) {
          this.waiting.delete(id);
          reject(err as Error);
        }
      });
    });
  }

  private onReply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.prefix.length));
    const waiter = this.waiting.get(id);
    if (!waiter) return;
    this.waiting.delete(id);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      waiter.reject(new JetStreamApiError({ code: 503, err_code: 10059, description: "no stream listens on this subject" }));
      return;
    }
    try {
      const reply = JSON.parse(new TextDecoder().decode(msg.data)) as { error?: ApiError; stream?: string; seq?: number; duplicate?: boolean };
      if (reply.error) waiter.reject(new JetStreamApiError(reply.error));
      else waiter.resolve({ stream: reply.stream ?? "", seq: reply.seq ?? 0, duplicate: reply.duplicate ?? false });
    } catch (err) {
      waiter.reject(new Error(`unreadable PubAck: ${(err as Error).message}`));
    }
  }

  private sweep(): void {
    const limit = Date.now() - this.timeoutMs;
    for (const [id, w] of this.waiting) {
      if (w.at > limit) break;
      this.waiting.delete(id);
      w.reject(new RetryableError(`no PubAck within ${this.timeoutMs} ms`));
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    for (const w of this.waiting.values()) w.reject(new RetryableError("publisher closed"));
    this.waiting.clear();
  }
}
