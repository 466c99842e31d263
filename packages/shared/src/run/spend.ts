import type { KV } from "@nats-io/kv";
import { Packr } from "msgpackr";
import { encode } from "../codec.js";
import { ConcurrencyError } from "../errors.js";
import { NO_SPEND, addSpend, type Spend } from "./budget.js";

const packr = new Packr({ useRecords: false });

export type SpendKind = "run" | "agent" | "task";

/**
 * One budget hour of a run's, an agent's or a task's spend. `seqs` holds, per run that spent in it, the stream
 * sequence of the newest event counted, so a redelivered event is not counted twice (an hour's entry grows
 * with the runs active in that hour, never with their events).
 */
export type SpendEntry = Spend & { calls: number; seqs: Record<string, number> };

/** `<kind>.<name>.<hour index>`: a window of N hours reads N keys, whatever the number of events in it. */
export function spendKey(kind: SpendKind, name: string, hour: number): string {
  return `${kind}.${name}.${hour}`;
}

function decodeEntry(bytes: Uint8Array): SpendEntry {
  return packr.unpack(bytes) as SpendEntry;
}

const MAX_ATTEMPTS = 20;

/**
 * Adds one LLM call's spend to the hour it happened in, for its run, agent and task. Idempotent by the run's
 * stream sequence; concurrent writers (other runs of the agent, other projector replicas) retry on the key's
 * revision.
 */
export async function recordSpend(
  kv: KV,
  where: { runId: string; agent: string; task?: string | undefined },
  seq: number,
  at: number,
  hourMs: number,
  spend: Spend,
): Promise<void> {
  const hour = Math.floor(at / hourMs);
  const keys = [spendKey("run", where.runId, hour), spendKey("agent", where.agent, hour)];
  if (where.task) keys.push(spendKey("task", where.task, hour));
  await Promise.all(keys.map((key) => addTo(kv, key, where.runId, seq, spend)));
}

async function addTo(kv: KV, key: string, runId: string, seq: number, spend: Spend): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const current = await kv.get(key);
    const entry = current && current.operation === "PUT" ? decodeEntry(current.value) : undefined;
    if ((entry?.seqs[runId] ?? 0) >= seq) return;
    const next: SpendEntry = {
      ...addSpend(entry ?? NO_SPEND, spend),
      calls: (entry?.calls ?? 0) + 1,
      seqs: { ...entry?.seqs, [runId]: seq },
    };
    try {
      // create refuses a key that exists, update one that moved: either way another writer came first.
      if (current) await kv.update(key, encode(next), current.revision);
      else await kv.create(key, encode(next));
      return;
    } catch (err) {
      if (attempt >= MAX_ATTEMPTS) throw new ConcurrencyError(`spend ${key}: gave up after ${attempt} conflicting writes`, { cause: err });
    }
  }
}

/** How far back a spend query reads (in budget hours): a bound on the keys one query may touch. */
export const MAX_SPEND_HOURS = 24 * 31;

/**
 * What a run, an agent or a task spent in the budget hours from the one `since` falls in to the one `until`
 * falls in (at most MAX_SPEND_HOURS of them, the newest). Reads one key per hour.
 */
export async function spendBetween(kv: KV, kind: SpendKind, name: string, since: number, until: number, hourMs: number): Promise<Spend> {
  const last = Math.floor(until / hourMs);
  const first = Math.max(Math.floor(since / hourMs), last - MAX_SPEND_HOURS + 1);
  const hours = Array.from({ length: Math.max(0, last - first + 1) }, (_, i) => first + i);
  const entries = await Promise.all(hours.map((h) => kv.get(spendKey(kind, name, h))));
  return entries.reduce<Spend>((sum, e) => (e && e.operation === "PUT" ? addSpend(sum, decodeEntry(e.value)) : sum), NO_SPEND);
}
