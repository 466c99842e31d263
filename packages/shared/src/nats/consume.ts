import { jetstream, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { ServiceMetrics } from "../metrics/metrics.js";
import { ackSoon, flushAcks } from "./batch.js";

export type ConsumerLoop = {
  /** Stops pulling, waits for the messages in hand to be handled. */
  stop(): Promise<void>;
};

export type ConsumerLoopOptions = {
  stream: string;
  durable: string;
  /** Messages handled at once by this process. */
  concurrency: number;
  handle: (msg: JsMsg) => Promise<void>;
  log: Logger;
  /** Counts redeliveries of this consumer's messages. */
  metrics?: ServiceMetrics | undefined;
  /** Messages that are not this handler's (told by their headers): acked as they arrive, unhandled. */
  skip?: (msg: JsMsg) => boolean;
  /**
   * Asked when the handler throws: the message's whole check, for one read with its envelope checked only (see
   * `decodeTyped`). Returns the error of a message that can never be handled (it is then terminated, saying why,
   * instead of being redelivered forever), else undefined.
   */
  invalid?: (msg: JsMsg) => Error | undefined;
};

/**
 * Pulls from a durable consumer shared by every replica of a service, handling up to `concurrency` messages
 * at once. The handler acks, naks or terms; a handler that throws leaves the message to be redelivered.
 * Survives consumer loss and reconnects by pulling again.
 */
export function startConsumerLoop(nc: NatsConnection, opts: ConsumerLoopOptions): ConsumerLoop {
  const js = jetstream(nc);
  const inflight = new Set<Promise<void>>();
  let stopped = false;
  let current: { close(): Promise<void | Error> } | undefined;

  const loop = async () => {
    while (!stopped) {
      try {
        const consumer = await js.consumers.get(opts.stream, opts.durable);
        if (stopped) break;
        // Short pulls: after a server dies (or a cluster's consumer leader moves) a pull with no heartbeat is
        // noticed and renewed within seconds, not after the default 30 s.
        const messages = await consumer.consume({ max_messages: Math.max(opts.concurrency, 16), expires: 5_000 });
        current = messages;
        // stop() may have come while we were getting here, before there was anything to close.
        if (stopped) {
          await messages.close();
          break;
        }
        for await (const msg of messages) {
          // Pulled but not started before stop: hand it back now rather than after the ack wait.
          if (stopped) {
            msg.nak();
            continue;
          }
          if (opts.skip?.(msg)) {
            ackSoon(msg);
            continue;
          }
          if (inflight.size >= opts.concurrency) await Promise.race(inflight);
          handOff(msg, opts, inflight);
        }
      } catch (err) {
        if (stopped) break;
        opts.log.warn({ err, durable: opts.durable }, "consumer interrupted; pulling again in 1s");
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  };
  const done = loop();

  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        stopped = true;
        await current?.close();
        await done;
        await Promise.allSettled([...inflight]);
        flushAcks();
      })();
      return stopping;
    },
  };
}

/**
 * Reads a bounded range through a consumer's messages until `take` says the range is done (returns true). Seen on a
 * cluster whose stream leader had just been killed: a consumer sent nothing more, and a reader waited for good. So a
 * read whose consumer sends nothing for `stallMs` is "stalled", one whose messages end first is "ended"; the caller
 * fails either way (to be tried again) rather than take part of the range as all of it. The messages are closed.
 */
export async function readRange<M>(
  messages: AsyncIterable<M> & { close(): Promise<unknown> },
  stallMs: number,
  take: (m: M) => boolean | Promise<boolean>,
): Promise<"done" | "stalled" | "ended"> {
  let stalled = false;
  const stall = setTimeout(() => {
    stalled = true;
    void messages.close();
  }, stallMs);
  try {
    for await (const m of messages) {
      stall.refresh();
      if (await take(m)) return "done";
    }
    return stalled ? "stalled" : "ended";
  } finally {
    clearTimeout(stall);
    await messages.close();
  }
}

/**
 * Starts handling one pulled message, held in `inflight` until done: a redelivery is counted, and a handler that
 * throws is logged and leaves the message to be redelivered. (Both consumer loops hand out messages this way.)
 */
export function handOff(msg: JsMsg, opts: Pick<ConsumerLoopOptions, "handle" | "log" | "metrics" | "invalid">, inflight: Set<Promise<void>>): void {
  if (opts.metrics && msg.info.deliveryCount > 1) opts.metrics.redelivered();
  const p: Promise<void> = opts
    .handle(msg)
    .catch((err: unknown) => {
      const invalid = opts.invalid?.(msg);
      if (invalid) {
        opts.log.warn({ subject: msg.subject, seq: msg.seq, err: invalid.message, handlerErr: (err as Error).message }, "handling failed on an invalid message; terminating it");
        msg.term();
        return;
      }
      opts.log.error({ err, subject: msg.subject, seq: msg.seq }, "handler failed; message will be redelivered");
    })
    .finally(() => inflight.delete(p));
  inflight.add(p);
}
