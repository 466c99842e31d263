import type { KV } from "@nats-io/kv";
import { Packr } from "msgpackr";
import { z } from "zod";
import { encode } from "../codec.js";
import type { RunState } from "./state.js";
import { NO_SPEND } from "./budget.js";

const packr = new Packr({ useRecords: false });

/**
 * The stored view leaves out the messages of the current step (they are in the run's stream) and the
 * agent snapshot (it is in the run's RunStarted event): listing thousands of runs reads small values.
 */
export function encodeView(state: RunState): Uint8Array {
  return encode(viewOf(state));
}

/** What the stored view holds of a folded state (see encodeView), as `get run` and `run --wait` show it. */
export function viewOf(state: RunState): Omit<RunState, "newMessages" | "llmDelta" | "agent"> {
  const { newMessages: _n, llmDelta: _d, agent: _a, ...view } = state;
  return view;
}

/** Run views are written only by the projector, from validated events; they are read without a schema. */
export function decodeView(bytes: Uint8Array): RunState {
  // Views stored before spend accounting lack its fields: they start at zero. Views stored before the results had a
  // subject of their own have no guardSeq: every event they folded was on the decisions' subject. Views stored before
  // the lanes (session 18) have no llmSeq or toolSeq: nothing was on those lanes.
  const view = { newMessages: [], llmDelta: [], costUsd: 0, descendants: NO_SPEND, resumes: 0, llmSeq: 0, toolSeq: 0, ...(packr.unpack(bytes) as Partial<RunState>) } as RunState;
  return view.guardSeq === undefined ? { ...view, guardSeq: view.lastSeq } : view;
}

/** An entry of the run index: which run appeared, and when (the index's order is the order runs appeared). */
export type RunIndexEntry = { runId: string; at: number };

export function encodeRunIndexEntry(entry: RunIndexEntry): Uint8Array {
  return encode(entry);
}

/** Written only by the projector; read without a schema, like the views. */
export function decodeRunIndexEntry(bytes: Uint8Array): RunIndexEntry {
  return packr.unpack(bytes) as RunIndexEntry;
}

export async function getRunView(runs: KV, runId: string): Promise<RunState | undefined> {
  const entry = await runs.get(runId);
  return entry && entry.operation === "PUT" ? decodeView(entry.value) : undefined;
}

/** A call waiting for a person or the outside world, as `get approvals` lists it. Written by the projector. */
export type WaitEntry = {
  runId: string;
  callId: string;
  kind: "approval" | "human" | "callback";
  tool: string;
  agent: string;
  runName?: string;
  /** approval: the arguments it would approve, and their digest. */
  args?: unknown;
  digest?: string;
  /** human: the question. */
  question?: string;
  since: number;
  dueAt?: number;
};

/** Key of a call in the timers and waits buckets. */
export function callKey(runId: string, callId: string): string {
  return `${runId}.${callId}`;
}

export function encodeWaitEntry(entry: WaitEntry): Uint8Array {
  return encode(entry);
}

export function decodeWaitEntry(bytes: Uint8Array): WaitEntry {
  return packr.unpack(bytes) as WaitEntry;
}

/**
 * Reads every current value of a bucket with one watch (no request per key). A key written while the watch
 * catches up comes again as an update: the newest value per key is kept, so no run is listed twice.
 */
export async function allValues(kv: KV, settleMs = 5_000): Promise<Uint8Array[]> {
  const status = await kv.status();
  if (status.values === 0) return [];
  const out = new Map<string, Uint8Array>();
  // Every key the watch brought, deleted ones too: the bucket keeps one message per key (its newest operation).
  const seen = new Set<string>();
  const watch = await kv.watch({ key: ">" });
  // Caught up is not enough while keys are being rewritten: a key whose value was replaced after the watch began
  // comes only with its new value, which may land after the watch had nothing pending. Once caught up, it goes on
  // until as many keys have come as the bucket held then, for settleMs at most.
  let holds: number | undefined;
  let settle: NodeJS.Timeout | undefined;
  for await (const e of watch) {
    seen.add(e.key);
    if (e.operation === "PUT") out.set(e.key, e.value);
    else out.delete(e.key);
    if (e.delta === 0 && holds === undefined) {
      holds = (await kv.status()).values;
      settle = setTimeout(() => watch.stop(), settleMs);
    }
    if (holds !== undefined && seen.size >= holds) break;
  }
  clearTimeout(settle);
  watch.stop();
  return [...out.values()];
}

/** A timers-bucket entry: wake run `runId` at `dueAt` about call `callId`. The due time itself is in the run's stream. */
export const WakeUp = z.object({ runId: z.string(), callId: z.string(), dueAt: z.number() });
export type WakeUp = z.infer<typeof WakeUp>;

export function encodeWakeUp(w: WakeUp): Uint8Array {
  return encode(w);
}
