import type { DeliveryInfo, JsMsg, PullOptions } from "@nats-io/jetstream";
import { createInbox, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { flushAcks } from "./batch.js";
import { handOff, type ConsumerLoop, type ConsumerLoopOptions } from "./consume.js";

export type BatchedConsumerLoopOptions = ConsumerLoopOptions & {
  /** Messages asked for per pull. */
  batch: number;
  /** Pause between pulls while there is little to do; doubled after each empty pull, up to `idleMs`. */
  intervalMs: number;
  /** Longest pause between pulls of an idle consumer. */
  idleMs: number;
  /** A pull the server does not answer within this (no consumer leader yet, a consumer deleted) is asked again. */
  pullTimeoutMs?: number;
};

/**
 * Pulls from a durable consumer in batches, every `intervalMs` at most, instead of holding a standing pull that
 * hands out every message the moment it is stored. For a reader that may trail by a few milliseconds (the
 * projector): it wakes a few dozen times a second, not at every event, and leaves the two cores to the services
 * on a run's critical path. Each pull is a `no_wait` request: the server sends what is pending, up to `batch`,
 * then a status (408 after some, 404 for none). A full batch is followed by the next pull at once.
 *
 * Handling is as in `startConsumerLoop`: up to `concurrency` at once; the handler acks, naks or terms; one that
 * throws leaves the message to be redelivered. Several replicas may share the consumer.
 */
export function startBatchedConsumerLoop(nc: NatsConnection, opts: BatchedConsumerLoopOptions): ConsumerLoop {
  const { log } = opts;
  const pullTimeoutMs = opts.pullTimeoutMs ?? 2_000;
  const inflight = new Set<Promise<void>>();
  const inbox = createInbox();
  const next = `$JS.API.CONSUMER.MSG.NEXT.${opts.stream}.${opts.durable}`;
  let stopped = false;
  let pull: { id: number; received: number; end: () => void } | undefined;
  let pulls = 0;
  let wake: (() => void) | undefined;

  const handle = (msg: JsMsg) => {
    // Pulled but not started before stop: hand it back now rather than after the ack wait.
    if (stopped) return msg.nak();
    handOff(msg, opts, inflight);
  };

  const sub = nc.subscribe(`${inbox}.*`, {
    callback: (err, m) => {
      if (err) return log.warn({ err, durable: opts.durable }, "pull subscription failed");
      if (m.reply?.startsWith("$JS.ACK.")) {
        // Messages of an earlier pull that ended by timeout still count: handle whatever comes.
        handle(new PulledMsg(nc, m));
        if (pull && ++pull.received >= opts.batch) pull.end();
        return;
      }
      // A status ends the pull it answers: 404 nothing pending, 408 no more pending, 409 leadership change, ...
      if (pull && m.subject === `${inbox}.${pull.id}`) pull.end();
    },
  });

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => ((wake = undefined), resolve()), ms);
      wake = () => (clearTimeout(timer), (wake = undefined), resolve());
    });

  /** One pull: how many messages it brought, or undefined if the server did not answer in time. */
  const pullOnce = (id: number) =>
    new Promise<number | undefined>((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), pullTimeoutMs);
      pull = {
        id,
        received: 0,
        end: () => {
          clearTimeout(timer);
          resolve(pull?.received ?? 0);
        },
      };
      try {
        nc.publish(next, JSON.stringify({ batch: opts.batch, no_wait: true } satisfies Partial<PullOptions>), { reply: `${inbox}.${id}` });
      } catch (err) {
        clearTimeout(timer);
        reject(err as Error);
      }
    }).finally(() => (pull = undefined));

  const loop = async () => {
    let pause = opts.intervalMs;
    while (!stopped) {
      // Room for a whole batch before asking for one.
      while (inflight.size > Math.max(0, opts.concurrency - opts.batch)) await Promise.race(inflight);
      const started = Date.now();
      let received: number | undefined;
      try {
        received = await pullOnce(++pulls);
      } catch (err) {
        if (stopped || nc.isClosed()) break;
        log.warn({ err, durable: opts.durable }, "pulling failed; pulling again in 1s");
        await sleep(1000);
        continue;
      }
      if (stopped) break;
      if (received === undefined) {
        log.warn({ durable: opts.durable, timeoutMs: pullTimeoutMs }, "a pull got no answer (no consumer, or its leader is moving); pulling again");
        pause = opts.intervalMs;
        await sleep(1000);
        continue;
      }
      if (received >= opts.batch) {
        pause = opts.intervalMs;
        continue;
      }
      pause = received === 0 ? Math.min(opts.idleMs, pause * 2) : opts.intervalMs;
      await sleep(Math.max(0, pause - (Date.now() - started)));
    }
  };
  const done = loop().catch((err: unknown) => log.error({ err, durable: opts.durable }, "batched consumer loop failed"));

  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        stopped = true;
        wake?.();
        // A pull still out is answered within milliseconds (or times out): what it brings is handed back.
        await done;
        sub.unsubscribe();
        await Promise.allSettled([...inflight]);
        flushAcks();
      })();
      return stopping;
    },
  };
}

/**
 * The tokens of a JetStream ack subject in its long form, `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<count>.
 * <sseq>.<dseq>.<ns>.<pending>[.<random>]`; the short form (no domain and account) gets `_` and `` for them.
 */
function ackTokens(reply: string): string[] {
  const t = reply.split(".");
  if (t.length === 9) t.splice(2, 0, "_", "");
  if (t.length < 11 || t[0] !== "$JS" || t[1] !== "ACK") throw new Error(`not a JetStream delivery: ${reply}`);
  return t;
}

/** Delivery info from a JetStream ack subject (`$JS.ACK.<stream>.<consumer>.<count>.<sseq>.<dseq>.<ns>.<pending>`, or with domain and account). */
export function deliveryInfoOf(reply: string): DeliveryInfo {
  const t = ackTokens(reply);
  const deliveryCount = Number(t[6]);
  return {
    domain: t[2] === "_" ? "" : t[2]!,
    account_hash: t[3]!,
    stream: t[4]!,
    consumer: t[5]!,
    deliveryCount,
    redelivered: deliveryCount > 1,
    streamSequence: Number(t[7]),
    deliverySequence: Number(t[8]),
    timestampNanos: Number(t[9]),
    pending: Number(t[10]),
  };
}

const ACK = new TextEncoder().encode("+ACK");
const NAK = new TextEncoder().encode("-NAK");
const WPI = new TextEncoder().encode("+WPI");
const TERM = new TextEncoder().encode("+TERM");

/** A message delivered to a pull of our own: what nats.js's JsMsg is, over the message and its ack subject. */
class PulledMsg implements JsMsg {
  private di: DeliveryInfo | undefined;
  private acked = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly msg: Msg,
  ) {}

  get info(): DeliveryInfo {
    return (this.di ??= deliveryInfoOf(this.msg.reply!));
  }
  get redelivered(): boolean {
    return this.info.deliveryCount > 1;
  }
  get seq(): number {
    return this.info.streamSequence;
  }
  get headers(): MsgHdrs | undefined {
    return this.msg.headers;
  }
  get data(): Uint8Array {
    return this.msg.data;
  }
  get subject(): string {
    return this.msg.subject;
  }
  get sid(): number {
    return this.msg.sid;
  }
  get timestampNanos(): bigint {
    // From the token itself: as a number (in `info`) nanoseconds since the epoch lose their last digits.
    return BigInt(ackTokens(this.msg.reply!)[9]!);
  }
  get time(): Date {
    return new Date(Math.floor(this.info.timestampNanos / 1e6));
  }
  get timestamp(): string {
    return this.time.toISOString();
  }

  private send(payload: Uint8Array): void {
    if (this.acked) return;
    this.acked = true;
    this.nc.publish(this.msg.reply!, payload);
  }
  ack(): void {
    this.send(ACK);
  }
  nak(millis?: number): void {
    this.send(millis === undefined ? NAK : new TextEncoder().encode(`-NAK ${JSON.stringify({ delay: millis * 1_000_000 })}`));
  }
  term(reason?: string): void {
    this.send(reason ? new TextEncoder().encode(`+TERM ${reason}`) : TERM);
  }
  working(): void {
    this.nc.publish(this.msg.reply!, WPI);
  }
  next(subj: string, ro: Partial<PullOptions> = {}): void {
    this.acked = true;
    this.nc.publish(this.msg.reply!, new TextEncoder().encode(`+NXT ${JSON.stringify({ batch: 1, ...ro })}`), { reply: subj });
  }
  async ackAck(opts: Partial<{ timeout: number }> = {}): Promise<boolean> {
    if (this.acked) return false;
    this.acked = true;
    await this.nc.request(this.msg.reply!, ACK, { timeout: opts.timeout ?? 5_000 });
    return true;
  }
  json<T>(): T {
    return JSON.parse(this.string()) as T;
  }
  string(): string {
    return new TextDecoder().decode(this.msg.data);
  }
}
