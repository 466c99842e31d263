import type { JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { z } from "zod";
import { DecodeError, decode } from "../codec.js";
import { RetryableError, TerminalError, ensureError } from "../errors.js";
import type { EventStore } from "../eventstore.js";
import type { RunEvent } from "../events.js";
import type { CommandOutcome, ServiceMetrics } from "../metrics/metrics.js";
import type { Names } from "../names.js";
import { ackSoon } from "./batch.js";
import { startConsumerLoop, type ConsumerLoop } from "./consume.js";
import { ensureConsumer } from "./provision.js";
import { inSpan } from "../tracing.js";

export type CommandContext = { signal: AbortSignal; deliveryCount: number };

export type CommandWorkerOptions<S extends z.ZodType> = {
  nc: NatsConnection;
  names: Names;
  store: EventStore;
  log: Logger;
  durable: string;
  filterSubject: string;
  schema: S;
  what: string;
  concurrency: number;
  /** How long a command may go without a heartbeat before it is redelivered to another worker. */
  ackWaitMs: number;
  /** Deliveries before a retryable failure becomes a recorded failure. */
  maxDeliver: number;
  /**
   * Does the work; returns the result event, or null when the result comes later from elsewhere (a callback).
   * Throws RetryableError to be tried again later, TerminalError to record a failure at once.
   */
  execute: (command: z.infer<S>, ctx: CommandContext) => Promise<RunEvent | null>;
  /** The event that records a failure that retrying cannot fix (or retries exhausted). */
  failure: (command: z.infer<S>, reason: string, retryable: boolean) => RunEvent;
  /** Counts each command's outcome and duration, and redeliveries. */
  metrics?: ServiceMetrics | undefined;
};

/**
 * A stateless worker over a shared durable pull consumer: every replica pulls from it, a command is acked only
 * after its result event is stored, and a crash leaves it to be redelivered. A malformed command is terminated
 * (never redelivered forever); exhausted retries become a Failed event, never a silent loss.
 */
export async function startCommandWorker<S extends z.ZodType>(opts: CommandWorkerOptions<S>): Promise<ConsumerLoop> {
  const { log, store, metrics } = opts;
  await ensureConsumer(opts.nc, opts.names.commandsStream, {
    durable_name: opts.durable,
    filter_subject: opts.filterSubject,
    ack_wait: opts.ackWaitMs * 1_000_000,
    // One delivery beyond ours: if a worker dies during the last attempt, the next one records the failure.
    max_deliver: opts.maxDeliver + 1,
    max_ack_pending: 10_000,
  });

  const handle = async (msg: JsMsg): Promise<void> => {
    const started = metrics ? performance.now() : 0;
    const done = (outcome: CommandOutcome) => metrics?.command(msg.subject, outcome, (performance.now() - started) / 1000);
    let command: z.infer<S>;
    try {
      command = decode(opts.schema, msg.data, `${opts.what} command on ${msg.subject}`, msg.headers?.get("Content-Type"));
    } catch (err) {
      if (err instanceof DecodeError) {
        log.warn({ seq: msg.seq, err: err.message }, `terminating an invalid ${opts.what} command`);
        // No reason text: NATS 2.9 does not understand `+TERM <reason>` and would leave the message pending.
        msg.term();
        done("terminated");
        return;
      }
      throw err;
    }
    const deliveryCount = msg.info.deliveryCount;
    if (deliveryCount > opts.maxDeliver) {
      await store.append(opts.failure(command, `gave up after ${opts.maxDeliver} attempts (the last one did not finish)`, true));
      msg.term();
      done("failed");
      return;
    }
    const controller = new AbortController();
    const heartbeat = setInterval(() => msg.working(), Math.max(1000, opts.ackWaitMs / 3));
    try {
      const runId = (command as { runId?: unknown }).runId;
      const event = await inSpan(
        `${opts.what} ${msg.subject}`,
        msg.headers?.get("traceparent") || undefined,
        { "smallchain.run_id": typeof runId === "string" ? runId : "", "smallchain.delivery": deliveryCount },
        () => opts.execute(command, { signal: controller.signal, deliveryCount }),
      );
      if (event) await store.append(event);
      ackSoon(msg);
      done("ok");
    } catch (raw) {
      // Stop whatever the failed attempt left running (a subprocess, an HTTP request).
      controller.abort();
      const err = ensureError(raw);
      const retryable = !(err instanceof TerminalError);
      if (retryable && deliveryCount < opts.maxDeliver) {
        const delay = err instanceof RetryableError && err.delayMs !== undefined ? err.delayMs : backoffMs(deliveryCount);
        log.warn({ seq: msg.seq, deliveryCount, delay, err: err.message }, `${opts.what} command failed; retrying`);
        msg.nak(delay);
        done("retried");
        return;
      }
      const reason = retryable ? `gave up after ${deliveryCount} attempts: ${err.message}` : err.message;
      log.warn({ seq: msg.seq, deliveryCount, err: err.message }, `${opts.what} command failed for good`);
      await store.append(opts.failure(command, reason, retryable));
      msg.term();
      done("failed");
    } finally {
      clearInterval(heartbeat);
    }
  };

  return startConsumerLoop(opts.nc, {
    stream: opts.names.commandsStream,
    durable: opts.durable,
    concurrency: opts.concurrency,
    handle,
    log,
    metrics,
  });
}

function backoffMs(deliveryCount: number): number {
  return Math.min(30_000, 250 * 2 ** (deliveryCount - 1));
}
