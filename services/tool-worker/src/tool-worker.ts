import {
  Blobs,
  CancelledRuns,
  INLINE_RESULT_BYTES,
  EventStore,
  RunEvent,
  ToolCommand,
  decode,
  encode,
  assertNever,
  hasSideEffects,
  provision,
  workerAckWaitMs,
  publishLive,
  startCommandWorker,
  type Logger,
  type Metrics,
  type Names,
  type NatsConnection,
  type Service,
} from "@smallchain/shared";
import { runBuiltin } from "./executors/builtin.js";
import { runCommand } from "./executors/command.js";
import { capText } from "./executors/output.js";
import { handOff } from "./executors/callback.js";
import { runHttp } from "./executors/http.js";
import { McpPool } from "./executors/mcp.js";
import type { ToolOutcome } from "./executors/outcome.js";

/** KV keys allow no ':'; command ids are `<run>:tool:<call>`. */
function effectKey(commandId: string): string {
  return commandId.replaceAll(":", ".");
}

/** A tool still running after this long shows up live (started, then finished or failed). */
const LIVE_AFTER_MS = 100;

export type ToolWorkerOptions = {
  nc: NatsConnection;
  names: Names;
  log: Logger;
  concurrency?: number;
  maxDeliver?: number;
  /** Without a heartbeat for this long, a command goes to another worker (default: SC_TOOL_ACK_WAIT_MS, else 30 s). */
  ackWaitMs?: number;
  /** The gateway's URL as the outside sees it: callback tools hand out `<publicUrl>/callbacks/<token>`. */
  publicUrl?: string;
  /** The process's metrics: commands and redeliveries. */
  metrics?: Metrics | undefined;
};

/**
 * Runs tool calls and records ToolCallCompleted/ToolCallFailed. A tool that throws, exits non-zero or
 * hangs past its timeout is a failed call the agent sees, not a crash. Stateless: scale by replicas.
 */
export async function startToolWorker(opts: ToolWorkerOptions): Promise<Service> {
  const { nc, names: n, log } = opts;
  const { effects, cancelled: cancelledBucket } = await provision(nc, n);
  const cancelled = await CancelledRuns.watch(cancelledBucket, log);
  const store = await EventStore.open(nc, n);
  const blobs = await Blobs.open(nc, n);

  const mcp = new McpPool(log);

  /**
   * A command, HTTP or MCP tool may have side effects: its result is remembered (by command id) before it is recorded, so a
   * command redelivered after the worker died between the two appends the remembered result instead of
   * running the tool again. Dying while the tool runs still runs it again: with the same
   * SMALLCHAIN_IDEMPOTENCY_KEY, so the tool itself can tell.
   */
  const remembered = async (command: ToolCommand): Promise<RunEvent | undefined> => {
    if (!hasSideEffects(command.tool)) return undefined;
    const entry = await effects.get(effectKey(command.id));
    return entry?.operation === "PUT" ? decode(RunEvent, entry.value, `remembered result of ${command.id}`) : undefined;
  };
  const remember = async (command: ToolCommand, event: RunEvent): Promise<void> => {
    if (hasSideEffects(command.tool)) await effects.put(effectKey(command.id), encode(event));
  };

  const execute = async (command: ToolCommand, signal: AbortSignal): Promise<ToolOutcome | null> => {
    const tool = command.tool;
    switch (tool.kind) {
      case "builtin":
        return runBuiltin(tool.builtin, command.args);
      case "command":
        return runCommand(tool.command, command.args, {
          idempotencyKey: command.id,
          runId: command.runId,
          callId: command.callId,
          signal,
        });
      case "http":
        return runHttp(tool.http, command.args, { idempotencyKey: command.id, runId: command.runId, callId: command.callId, signal });
      case "mcp":
        return mcp.call(tool.mcp.server, tool.mcp.tool, command.args, signal);
      case "callback":
        await handOff(tool, command, { nc, names: n, signal, ...(opts.publicUrl && { publicUrl: opts.publicUrl }) });
        return null;
      case "agent":
        return { ok: false, error: `tool "${tool.name}" delegates to an agent; the scheduler runs it, not a tool worker` };
      default:
        return assertNever(tool);
    }
  };

  const loop = await startCommandWorker({
    nc,
    names: n,
    store,
    log,
    durable: n.consumers.toolWorker,
    filterSubject: n.allToolCommandsSubject,
    kind: "tool",
    subjectOf: (command) => n.toolCommandSubject(command.tool.kind),
    schema: ToolCommand,
    what: "tool",
    concurrency: opts.concurrency ?? 64,
    ackWaitMs: opts.ackWaitMs ?? workerAckWaitMs("tool"),
    maxDeliver: opts.maxDeliver ?? 5,
    metrics: opts.metrics?.service("tool-worker"),
    cancelled,
    execute: async (command, { signal }): Promise<RunEvent | null> => {
      const earlier = await remembered(command);
      if (earlier) {
        log.info({ runId: command.runId, callId: command.callId }, "tool call already ran; recording its remembered result");
        return earlier;
      }
      const started = Date.now();
      const live = n.liveSubject(command.runId);
      const progress = { kind: "tool" as const, runId: command.runId, callId: command.callId, tool: command.tool.name };
      // Progress is news only for a tool that takes a while: an instant one costs no extra messages.
      let announced = false;
      const announce = setTimeout(() => {
        announced = true;
        publishLive(nc, live, { ...progress, status: "started", at: started });
      }, LIVE_AFTER_MS);
      let outcome;
      try {
        outcome = await execute(command, signal);
      } finally {
        clearTimeout(announce);
      }
      // A callback's result comes back later, with its token.
      if (!outcome) return null;
      if (announced) publishLive(nc, live, { ...progress, status: outcome.ok ? "finished" : "failed", at: Date.now(), durationMs: Date.now() - started });
      const base = { id: `${command.runId}:done:${command.callId}`, v: 1 as const, runId: command.runId, at: Date.now(), causationId: command.id };
      log.debug({ runId: command.runId, callId: command.callId, tool: command.tool.name, ok: outcome.ok }, "tool call finished");
      const durationMs = Date.now() - started;
      let event: RunEvent;
      if (!outcome.ok) {
        event = { ...base, type: "ToolCallFailed", data: { callId: command.callId, error: capText(outcome.error, INLINE_RESULT_BYTES, "error message cut") } };
      } else if (Buffer.byteLength(outcome.output) > INLINE_RESULT_BYTES) {
        // Too large for an event: the whole goes to the object store (under the call, so a retry rewrites the
        // same object), the event keeps a preview and the reference.
        const kept = await blobs.keepResult(command.runId, command.callId, outcome.output);
        event = { ...base, type: "ToolCallCompleted", data: { callId: command.callId, ...kept, durationMs } };
      } else {
        event = { ...base, type: "ToolCallCompleted", data: { callId: command.callId, result: outcome.output, durationMs } };
      }
      await remember(command, event);
      return event;
    },
    failure: (command, reason): RunEvent => ({
      id: `${command.runId}:done:${command.callId}`,
      type: "ToolCallFailed",
      v: 1,
      runId: command.runId,
      at: Date.now(),
      causationId: command.id,
      data: { callId: command.callId, error: reason },
    }),
  });
  log.info({ prefix: n.prefix }, "tool-worker started");
  return {
    async stop() {
      await loop.stop();
      await mcp.close();
      cancelled.stop();
    },
  };
}
