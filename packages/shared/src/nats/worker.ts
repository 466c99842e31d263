import type { JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { z } from "zod";
import { DecodeError, decodeRaw, decodeTyped, encode } from "../codec.js";
import { isCommandShaped } from "../commands.js";
import { RetryableError, TerminalError, ensureError } from "../errors.js";
import { isTyped, type EventStore } from "../eventstore.js";
import type { RunEvent } from "../events.js";
import type { CommandOutcome, ServiceMetrics } from "../metrics/metrics.js";
import { Header, type Names } from "../names.js";
import { ackSoon } from "./batch.js";
import { startConsumerLoop, type ConsumerLoop } from "./consume.js";
import { decisionConsumer, ensureConsumer, workerConsumerSettings } from "./provision.js";
import { inSpan } from "../tracing.js";
import type { CancelledRuns } from "../run/cancelled.js";

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
   * Deliveries beyond `maxDeliver` that may end without a word (a worker killed mid-command, or holding it
   * unstarted in its buffer) before the command is given up as one that kills its workers. Default 20: most
   * such deliveries say nothing about the command, so they are not held against it like errors are.
   */
  maxLost?: number;
  /**
   * Does the work; returns the result event, or null when the result comes later from elsewhere (a callback).
   * Throws RetryableError to be tried again later, TerminalError to record a failure at once.
   */
  execute: (command: z.infer<S>, ctx: CommandContext) => Promise<RunEvent | null>;
  /** The event that records a failure that retrying cannot fix (or retries exhausted). */
  failure: (command: z.infer<S>, reason: string, retryable: boolean) => RunEvent;
  /** Counts each command's outcome and duration, and redeliveries. */
  metrics?: ServiceMetrics | undefined;
  /** Runs cancelled lately: their commands are acked and dropped, and one running is stopped. */
  cancelled?: CancelledRuns | undefined;
  /**
   * The worker's kind: it takes the commands the runs' decisions carry with this kind in their `Sc-Command` header,
   * through its kind's consumer of that lane of every run (`decisionConsumer`); what else is on the lane (a budget
   * decision, an input) is acked unread as it arrives.
   */
  kind: "llm" | "tool";
  /** The command subject a command would have had on the COMMANDS stream: its metrics label and span name. */
  subjectOf: (command: z.infer<S>) => string;
};

/**
 * A stateless worker over shared durable pull consumers: every replica pulls from them, a command is acked only
 * after its result event is stored, and a crash leaves it to be redelivered. Most commands come in the decisions
 * that ask for them (the runs' lanes of the worker's kind); those asked for by an input (an approved tool, a callback)
 * or a fork's copy come on the COMMANDS stream. A malformed command is terminated (never redelivered forever);
 * exhausted retries become a Failed event, never a silent loss.
 */
export async function startCommandWorker<S extends z.ZodType>(opts: CommandWorkerOptions<S>): Promise<ConsumerLoop> {
  const { log, store, metrics } = opts;
  const settings = workerConsumerSettings(opts.ackWaitMs);
  await ensureConsumer(opts.nc, opts.names.commandsStream, { durable_name: opts.durable, filter_subject: opts.filterSubject, ...settings });
  // Provisioning made it (delivering decisions from then on); this sets the worker's ack wait.
  const decisions = decisionConsumer(opts.names, opts.kind, opts.ackWaitMs);
  await ensureConsumer(opts.nc, opts.names.eventsStream, decisions);

  // What runs now, by run: a cancel stops it.
  const running = new Map<string, Set<AbortController>>();
  const stopListening = opts.cancelled?.onCancel((runId) => running.get(runId)?.forEach((c) => c.abort(new Error(`run ${runId} was cancelled`))));
  const runIdOf = (command: unknown): string | undefined => {
    const id = (command as { runId?: unknown } | null)?.runId;
    return typeof id === "string" ? id : undefined;
  };
  const drop = (msg: JsMsg, runId: string, done: (outcome: CommandOutcome) => void) => {
    log.info({ runId, seq: msg.seq }, `dropping a ${opts.what} command of a cancelled run`);
    ackSoon(msg);
    done("terminated");
  };

  /** A command on the COMMANDS stream: the message is the command. */
  const fromCommands = (msg: JsMsg): Promise<void> =>
    handle(msg, msg.subject, (typed) => ({
      command: decodeTyped(opts.schema, msg.data, `${opts.what} command on ${msg.subject}`, typed, isCommandShaped, msg.headers?.get("Content-Type")),
      label: msg.subject,
    }));
  /** A decision that carries the command: it is in its `command` field, which nothing else decodes. */
  const fromDecision = (msg: JsMsg): Promise<void> =>
    handle(msg, decisions.filter_subject, (typed) => {
      const what = `${opts.what} command in decision ${msg.seq} on ${msg.subject}`;
      const bytes = (decodeRaw(msg.data, what) as { command?: unknown } | null)?.command;
      if (!(bytes instanceof Uint8Array)) throw new DecodeError(`${what}: the decision carries no command`);
      // A decision's command is as typed as the decision that carries it.
      const command = decodeTyped(opts.schema, bytes, what, typed, isCommandShaped);
      return { command, label: opts.subjectOf(command) };
    });

  /**
   * An invalid command is terminated, saying what is wrong. One declared typed (see `decodeTyped`) is checked whole
   * only should its work fail unexpectedly.
   */
  const terminateInvalid = (msg: JsMsg, err: DecodeError, done: (outcome: CommandOutcome) => void) => {
    log.warn({ seq: msg.seq, err: err.message }, `terminating an invalid ${opts.what} command`);
    // No reason text: NATS 2.9 does not understand `+TERM <reason>` and would leave the message pending.
    msg.term();
    done("terminated");
  };
  /** The error with which a typed command fails its schema, if it does. */
  const invalidity = new WeakMap<JsMsg, () => DecodeError | undefined>();

  /**
   * `label`: the metrics label (a command subject, not a run's) until the command is read and says its own. `read(typed)`:
   * the command, its envelope checked only when `typed` (see `decodeTyped`).
   */
  const handle = async (msg: JsMsg, unread: string, read: (typed: boolean) => { command: z.infer<S>; label: string }): Promise<void> => {
    const started = metrics ? performance.now() : 0;
    let label = unread;
    const done = (outcome: CommandOutcome) => metrics?.command(label, outcome, (performance.now() - started) / 1000);
    let command: z.infer<S>;
    const typed = isTyped(msg.headers);
    const checkWhole = () => {
      try {
        read(false);
        return undefined;
      } catch (err) {
        return err instanceof DecodeError ? err : undefined;
      }
    };
    try {
      ({ command, label } = read(typed));
    } catch (err) {
      const invalid = err instanceof DecodeError ? err : typed ? checkWhole() : undefined;
      if (invalid) return terminateInvalid(msg, invalid, done);
      throw err;
    }
    if (typed) invalidity.set(msg, checkWhole);
    const deliveryCount = msg.info.deliveryCount;
    const runId = runIdOf(command);
    if (runId !== undefined && opts.cancelled?.has(runId)) return drop(msg, runId, done);
    const heartbeat = setInterval(() => msg.working(), Math.max(1000, opts.ackWaitMs / 3));
    try {
      if (deliveryCount > opts.maxDeliver + (opts.maxLost ?? 20)) {
        const reason = `gave up after ${deliveryCount - 1} deliveries, the last ones ended without a result (did the command kill its workers?)`;
        await appendPatiently(store, opts.failure(command, reason, true), log);
        msg.term();
        done("failed");
        return;
      }
      await attempt(msg, command, label, runId, deliveryCount, done);
    } finally {
      clearInterval(heartbeat);
    }
  };

  /** One attempt, registered under its run so that a cancel can stop it. */
  const attempt = async (
    msg: JsMsg,
    command: z.infer<S>,
    label: string,
    runId: string | undefined,
    deliveryCount: number,
    done: (outcome: CommandOutcome) => void,
  ): Promise<void> => {
    const controller = new AbortController();
    if (runId === undefined) return attemptWith(controller, undefined, msg, command, label, deliveryCount, done);
    const set = running.get(runId) ?? new Set();
    set.add(controller);
    running.set(runId, set);
    try {
      await attemptWith(controller, runId, msg, command, label, deliveryCount, done);
    } finally {
      set.delete(controller);
      if (set.size === 0) running.delete(runId);
    }
  };

  const attemptWith = async (
    controller: AbortController,
    runId: string | undefined,
    msg: JsMsg,
    command: z.infer<S>,
    label: string,
    deliveryCount: number,
    done: (outcome: CommandOutcome) => void,
  ): Promise<void> => {
    let event: RunEvent | null;
    try {
      event = await inSpan(
        `${opts.what} ${label}`,
        msg.headers?.get("traceparent") || undefined,
        { "smallchain.run_id": runId ?? "", "smallchain.delivery": deliveryCount },
        () => opts.execute(command, { signal: controller.signal, deliveryCount }),
      );
    } catch (raw) {
      // Stop whatever the failed attempt left running (a subprocess, an HTTP request).
      controller.abort();
      // Stopped because its run was cancelled: nothing to record or retry.
      if (runId !== undefined && opts.cancelled?.has(runId)) return drop(msg, runId, done);
      const err = ensureError(raw);
      // Failed with no word of why (a TypeError, say): a typed command is checked whole now.
      const invalid = err instanceof RetryableError || err instanceof TerminalError ? undefined : invalidity.get(msg)?.();
      if (invalid) return terminateInvalid(msg, invalid, done);
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
      await appendPatiently(store, opts.failure(command, reason, retryable), log);
      msg.term();
      done("failed");
      return;
    }
    // Stopped halfway because its run was cancelled (a killed tool reports a failure): nothing to record.
    if (controller.signal.aborted && runId !== undefined && opts.cancelled?.has(runId)) return drop(msg, runId, done);
    // The work is done: storing its result is retried here, not by running the work (an LLM call, a tool) again.
    if (event) {
      try {
        await appendPatiently(store, event, log);
      } catch (err) {
        if (!isTooLarge(err)) throw err;
        // No retry can make it fit: the call fails, saying why, instead of being run again and again.
        const reason = `its result (${encode(event).length} bytes as an event) is larger than NATS accepts in one message (max_payload)`;
        log.warn({ seq: msg.seq, runId }, `${opts.what} command failed for good: ${reason}`);
        await appendPatiently(store, opts.failure(command, reason, false), log);
        msg.term();
        done("failed");
        return;
      }
    }
    ackSoon(msg);
    done("ok");
  };

  const { kind } = opts;
  const loops = [
    startConsumerLoop(opts.nc, { stream: opts.names.commandsStream, durable: opts.durable, concurrency: opts.concurrency, handle: fromCommands, log, metrics }),
    startConsumerLoop(opts.nc, {
      stream: opts.names.eventsStream,
      durable: decisions.durable_name,
      concurrency: opts.concurrency,
      skip: (msg) => msg.headers?.get(Header.Command) !== kind,
      handle: fromDecision,
      log,
      metrics,
    }),
  ];
  return {
    async stop() {
      stopListening?.();
      await Promise.all(loops.map((l) => l.stop()));
    },
  };
}

/**
 * Appends a result to its run's results subject, retrying while JetStream is briefly unavailable (a restarting server, a cluster electing a
 * leader) for about two minutes; the caller keeps the command alive meanwhile. Then it gives up: the command
 * is redelivered.
 */
async function appendPatiently(store: EventStore, event: RunEvent, log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await store.appendResult(event);
      return;
    } catch (err) {
      if (attempt >= 60 || isTooLarge(err)) throw err;
      if (attempt === 1 || attempt % 10 === 0) {
        log.warn({ runId: event.runId, event: event.id, attempt, err: (err as Error).message }, "storing a result failed; trying again");
      }
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
    }
  }
}

/** A message over the server's max_payload: refused by the client before it is sent, whatever the retries. */
function isTooLarge(err: unknown): boolean {
  return err instanceof Error && err.message.includes("max_payload");
}

function backoffMs(deliveryCount: number): number {
  return Math.min(30_000, 250 * 2 ** (deliveryCount - 1));
}
