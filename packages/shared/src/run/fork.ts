import { RunEvent, type RecordedEvent } from "../events.js";
import { deriveRunId } from "../ids.js";
import { evolve, initialState, isTerminal, messagesOf, type RunState } from "./state.js";

/** A fork that cannot be made as asked; the message says why and what would work. */
export class ForkError extends Error {
  override name = "ForkError";
}

export type ForkOptions = {
  /** Replaces the content of the last user or tool message of the copied events. */
  message?: string;
  name?: string;
  /** Makes a fresh callback token (callbacks handed out by the original must not complete the fork's calls). */
  newToken: () => string;
};

/**
 * The first events of a new run `newRunId` that begins as run `events[0].runId` did up to sequence `atSeq`: the
 * same events with the new run's ids (deterministic ids keep their shape, so the scheduler's own next ids follow
 * on), child run ids and callback tokens, and a RunRequested that says it is a fork. Pure apart from `newToken`.
 * Every event is validated again, and the copy folded, before it is returned.
 */
export function planFork(events: RecordedEvent[], atSeq: number, newRunId: string, now: number, opts: ForkOptions): RunEvent[] {
  const first = events[0];
  const last = events[events.length - 1];
  if (!first || !last) throw new ForkError("the run has no events");
  const runId = first.runId;
  if (atSeq < first.seq || atSeq > last.seq) {
    throw new ForkError(`sequence ${atSeq} is ${atSeq > last.seq ? "beyond the end" : "before the start"} of run ${runId} (its events: #${first.seq} to #${last.seq})`);
  }
  const prefix = events.filter((e) => e.seq <= atSeq);
  let state: RunState = initialState(runId);
  for (const e of prefix) {
    if (isTerminal(state)) {
      throw new ForkError(`run ${runId} ended at #${state.lastSeq} (${state.status}); fork at an earlier sequence (see: smallchain get events --run ${runId})`);
    }
    state = evolve(state, e);
  }
  if (isTerminal(state)) {
    throw new ForkError(`#${atSeq} ends run ${runId} (${state.status}); fork at an earlier sequence (see: smallchain get events --run ${runId})`);
  }

  const mapId = (id: string) => (id.startsWith(`${runId}:`) ? `${newRunId}${id.slice(runId.length)}` : `${newRunId}:copy:${id}`);
  let copied: RunEvent[] = prefix.map((e): RunEvent => {
    // A copy carries no command: the fork's calls go out (on the COMMANDS stream) once its copy is complete.
    const { seq: _seq, result: _result, command: _command, ...event } = e;
    const base = { ...event, id: mapId(e.id), runId: newRunId, ...(e.causationId !== undefined && { causationId: mapId(e.causationId) }) };
    switch (base.type) {
      case "RunRequested": {
        const { parent: _p, forkOf: _f, ...data } = base.data;
        return {
          ...base,
          at: now,
          data: {
            ...data,
            depth: 0,
            rootRunId: newRunId,
            name: opts.name ?? `${data.name ?? runId} (fork of ${runId} at #${atSeq})`,
            forkOf: { runId, atSeq, events: prefix.length },
          },
        };
      }
      case "ChildRunRequested":
        return { ...base, data: { ...base.data, childRunId: deriveRunId("child", newRunId, base.data.callId) } };
      case "ToolCallAwaitingCallback":
        return { ...base, data: { ...base.data, token: `${newRunId}-${base.data.callId}-${opts.newToken()}` } };
      default:
        return base;
    }
  });
  if (opts.message !== undefined) copied = withMessage(copied, opts.message, runId);

  const validated = copied.map((e) => RunEvent.parse(e));
  validated.reduce((s, e, i) => evolve(s, { ...e, seq: i + 1 }), initialState(newRunId));
  return validated;
}

/** Replaces the content of the newest user or tool message the events add to the context window. */
function withMessage(events: RunEvent[], message: string, runId: string): RunEvent[] {
  let state = initialState(events[0]!.runId);
  let target = -1;
  events.forEach((e, i) => {
    if (messagesOf(state, e).some((m) => m.role === "user" || m.role === "tool")) target = i;
    state = evolve(state, { ...e, seq: i + 1 });
  });
  const e = events[target];
  if (!e) throw new ForkError(`run ${runId} has no user or tool message up to that sequence to replace`);
  const replaced = ((): RunEvent => {
    switch (e.type) {
      case "RunStarted":
        // The user message comes from RunRequested's input; RunStarted only puts it in the window.
        return e;
      case "ToolCallCompleted": {
        // The given text replaces the whole result, also one kept in the object store.
        const { resultRef: _ref, ...data } = e.data;
        return { ...e, data: { ...data, result: message } };
      }
      case "HumanInputReceived":
        return { ...e, data: { ...e.data, answer: message } };
      case "TimerFired":
        return { ...e, data: { ...e.data, outcome: "completed", result: message } };
      case "ToolCallFailed":
      case "ToolCallRejected":
        // The call now has the given result instead of its failure or rejection.
        return { id: e.id, type: "ToolCallCompleted", v: 1, runId: e.runId, at: e.at, ...(e.causationId !== undefined && { causationId: e.causationId }), data: { callId: e.data.callId, result: message } };
      default:
        throw new ForkError(`cannot replace the message of a ${e.type} event`);
    }
  })();
  const out = [...events];
  out[target] = replaced;
  if (e.type === "RunStarted") {
    const requested = out[0];
    if (requested?.type !== "RunRequested") throw new ForkError(`run ${runId} does not begin with RunRequested`);
    out[0] = { ...requested, data: { ...requested.data, input: message } };
  }
  return out;
}
