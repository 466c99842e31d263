import { timingSafeEqual } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { ConcurrencyError } from "./errors.js";
import type { EventStore } from "./eventstore.js";
import type { RecordedEvent, RunEvent } from "./events.js";
import { argsDigest, callArguments, evolve, findCall, initialState, isTerminal, laneOf, laneSeq, pastInvalid, tokenDigest, type CallState, type RunState } from "./run/state.js";
import type { Lane } from "./names.js";
import { getRunView } from "./run/views.js";
import { LimitRaise } from "./run/budget.js";

/** Why a person's or the outside world's input was refused; `code` maps to an HTTP status and a CLI exit code. */
export class ControlError extends Error {
  override name = "ControlError";
  constructor(
    readonly code: "not_found" | "conflict" | "forbidden" | "invalid",
    message: string,
  ) {
    super(message);
  }
}

export const HTTP_STATUS: Record<ControlError["code"], number> = { invalid: 400, forbidden: 403, not_found: 404, conflict: 409 };

/** A human's verdict on a call awaiting approval. With `digest`, it only applies to the arguments it names. */
export const ApprovalInput = z
  .object({
    approved: z.boolean(),
    by: z.string().max(200).optional(),
    comment: z.string().max(10_000).optional(),
    digest: z.string().max(64).optional(),
  })
  .strict();
export type ApprovalInput = z.infer<typeof ApprovalInput>;

export const HumanAnswer = z.object({ answer: z.string().max(100_000), by: z.string().max(200).optional() }).strict();
export type HumanAnswer = z.infer<typeof HumanAnswer>;

/** What the outside world sends back for a callback: its result, or an error the agent should see. */
export const CallbackResult = z.union([
  z.object({ result: z.unknown() }).strict().refine((r) => r.result !== undefined, { message: "result is missing" }),
  z.object({ error: z.string().min(1).max(100_000) }).strict(),
]);
export type CallbackResult = z.infer<typeof CallbackResult>;

/** Resume a paused run: `raise` adds to its limits; without it, the limit that paused the run is lifted for the rest of the run. */
export const ResumeInput = z.object({ by: z.string().max(200).optional(), raise: LimitRaise.optional() }).strict();
export type ResumeInput = z.infer<typeof ResumeInput>;

export const CancelInput = z.object({ by: z.string().max(200).optional(), reason: z.string().max(10_000).optional() }).strict();
export type CancelInput = z.infer<typeof CancelInput>;

const MAX_RESULT_CHARS = 256 * 1024;
const MAX_ATTEMPTS = 8;

/** `callId` is absent for input to the run as a whole (resume, cancel). */
export type Accepted = { runId: string; callId?: string; event: RecordedEvent };

/**
 * Input from people and the outside world into a waiting run: approvals, answers and callback results. Each
 * is checked against the run's current state and appended guarded by its last sequence, so it lands only on
 * the wait it was meant for, exactly once; anything else is refused with a ControlError and changes nothing.
 * Used by the CLI, the HTTP gateway and the scheduler's NATS request handlers alike.
 */
export class Control {
  constructor(
    private readonly store: EventStore,
    private readonly runs: KV,
  ) {}

  async approval(runId: string, callId: string, input: ApprovalInput): Promise<Accepted> {
    return this.appendTo(runId, (state) => {
      const call = this.openCall(state, callId, "awaitingApproval", "awaiting approval");
      if (input.digest !== undefined && input.digest !== argsDigest(callArguments(call.arguments))) {
        throw new ControlError("conflict", `call ${callId} of run ${runId} has other arguments than the ones approved (digest ${input.digest} does not match)`);
      }
      const base = { v: 1 as const, runId, at: Date.now() };
      const who = { ...(input.by !== undefined && { by: input.by }), ...(input.comment !== undefined && { comment: input.comment }) };
      return input.approved
        ? { ...base, id: `${runId}:approval:${callId}`, type: "ToolCallApproved", data: { callId, ...who } }
        : { ...base, id: `${runId}:done:${callId}`, type: "ToolCallRejected", data: { callId, ...who } };
    });
  }

  async respond(runId: string, callId: string, input: HumanAnswer): Promise<Accepted> {
    return this.appendTo(runId, (state) => {
      this.openCall(state, callId, "awaitingHuman", "waiting for a human's answer");
      return {
        id: `${runId}:done:${callId}`,
        type: "HumanInputReceived",
        v: 1,
        runId,
        at: Date.now(),
        data: { callId, answer: input.answer, ...(input.by !== undefined && { by: input.by }) },
      };
    });
  }

  /** Completes the call a one-time callback token was issued for. */
  async callback(token: string, input: CallbackResult): Promise<Accepted> {
    const parsed = parseToken(token);
    if (!parsed) throw new ControlError("not_found", "unknown callback token");
    const { runId, callId } = parsed;
    const result = "result" in input ? (typeof input.result === "string" ? input.result : JSON.stringify(input.result)) : undefined;
    if ((result ?? "").length > MAX_RESULT_CHARS) throw new ControlError("invalid", `callback result is too large (over ${MAX_RESULT_CHARS} characters)`);
    return this.appendTo(runId, (state) => {
      if (state.eventCount === 0) throw new ControlError("not_found", "unknown callback token");
      const call = findCall(state, callId);
      if (!call?.tokenDigest) {
        throw new ControlError("conflict", `callback token is no longer valid: call ${callId} of run ${runId} has finished`);
      }
      const given = Buffer.from(tokenDigest(token), "hex");
      if (!timingSafeEqual(given, Buffer.from(call.tokenDigest, "hex"))) throw new ControlError("forbidden", "invalid callback token");
      if (call.status !== "awaitingCallback") {
        throw new ControlError("conflict", `callback token was already used: call ${callId} of run ${runId} has its result`);
      }
      const base = { id: `${runId}:done:${callId}`, v: 1 as const, runId, at: Date.now() };
      return result !== undefined
        ? { ...base, type: "ToolCallCompleted", data: { callId, result } }
        : { ...base, type: "ToolCallFailed", data: { callId, error: (input as { error: string }).error } };
    });
  }

  /** A paused run goes on, with raised limits (or the one that paused it lifted). */
  async resume(runId: string, input: ResumeInput): Promise<Accepted> {
    return this.appendTo(runId, (state) => {
      if (state.eventCount === 0) throw new ControlError("not_found", `run ${runId} not found`);
      if (state.status !== "Paused" || !state.pause) throw new ControlError("conflict", `run ${runId} is not paused (it is ${state.status})`);
      const raise = Object.fromEntries(Object.entries(input.raise ?? {}).filter(([, v]) => v !== undefined && v > 0));
      const data = {
        ...(input.by !== undefined && { by: input.by }),
        ...(Object.keys(raise).length > 0 ? { raise } : { lift: [state.pause.limit] }),
      };
      return { id: `${runId}:resumed:${state.resumes + 1}`, type: "RunResumed", v: 1, runId, at: Date.now(), data };
    });
  }

  /** Cancels a run; the scheduler then cancels its children, and theirs (effects of RunCancelled). */
  async cancel(runId: string, input: CancelInput): Promise<Accepted> {
    return this.appendTo(runId, (state) => {
      if (state.eventCount === 0) throw new ControlError("not_found", `run ${runId} not found`);
      if (isTerminal(state)) throw new ControlError("conflict", `run ${runId} has ended (${state.status})`);
      const reason = `cancelled${input.by ? ` by ${input.by}` : ""}${input.reason ? `: ${input.reason}` : ""}`;
      return { id: `${runId}:cancelled`, type: "RunCancelled", v: 1, runId, at: Date.now(), data: { reason } };
    });
  }

  /** The run's current state: its stored view, caught up with the stream. */
  async current(runId: string): Promise<RunState> {
    const view = await getRunView(this.runs, runId);
    const skipped: { seq: number; lane: Lane | undefined }[] = [];
    const events = await this.store.readRun(runId, (view?.lastSeq ?? 0) + 1, (_err, seq, lane) => skipped.push({ seq, lane }));
    const state = events.reduce(evolve, view ?? initialState(runId));
    return skipped.reduce((s, { seq, lane }) => pastInvalid(s, seq, lane), state);
  }

  private openCall(state: RunState, callId: string, status: CallState["status"], what: string): CallState {
    if (state.eventCount === 0) throw new ControlError("not_found", `run ${state.runId} not found`);
    if (isTerminal(state)) throw new ControlError("conflict", `run ${state.runId} has ended (${state.status})`);
    const call = findCall(state, callId);
    const step = /^s(\d+)c\d+$/.exec(callId)?.[1];
    if (!call && step !== undefined && Number(step) <= state.step && !(state.turn.phase === "tools" && state.turn.step === Number(step))) {
      throw new ControlError("conflict", `call ${callId} of run ${state.runId} has its result already (the run is at step ${state.step})`);
    }
    if (!call) {
      const open = state.turn.phase === "tools" ? state.turn.calls.map((c) => `${c.callId} (${c.status})`).join(", ") : "none";
      throw new ControlError("not_found", `run ${state.runId} has no call ${callId} in its current step (calls: ${open})`);
    }
    if (call.status !== status) throw new ControlError("conflict", `call ${callId} of run ${state.runId} is not ${what} (it is ${call.status})`);
    return call;
  }

  private async appendTo(runId: string, make: (state: RunState) => RunEvent): Promise<Accepted> {
    for (let attempt = 1; ; attempt++) {
      const state = await this.current(runId);
      const event = make(state);
      // On the lane of the state it was checked against, as the scheduler's decisions from that state: one of the two lands.
      const lane = laneOf(state);
      try {
        const r = await this.store.append(event, laneSeq(state, lane), lane);
        if (r.duplicate) throw new ConcurrencyError(`run ${runId}: ${event.id} was recorded meanwhile`);
        const callId = (event.data as { callId?: string }).callId;
        return { runId, ...(callId !== undefined && { callId }), event: { ...event, seq: r.seq, ...(lane !== "ev" && { lane }) } };
      } catch (err) {
        // The run moved on meanwhile: check again against what it is now.
        if (!(err instanceof ConcurrencyError) || attempt >= MAX_ATTEMPTS) throw err;
      }
    }
  }
}

/** Tokens are `<runId>-<callId>-<secret>`; call ids and secrets hold no '-', run ids may. */
function parseToken(token: string): { runId: string; callId: string } | undefined {
  const parts = token.split("-");
  if (parts.length < 3 || !/^[A-Za-z0-9_-]{1,200}$/.test(token)) return undefined;
  const callId = parts[parts.length - 2]!;
  const runId = parts.slice(0, -2).join("-");
  return runId && /^s\d+c\d+$/.test(callId) ? { runId, callId } : undefined;
}
