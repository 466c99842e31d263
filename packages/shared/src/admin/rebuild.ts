import { isDeepStrictEqual } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Client } from "../client.js";
import type { RecordedEvent } from "../events.js";
import type { ChatMessage } from "../run/messages.js";
import { evolve, initialState, messagesOf, type RunState } from "../run/state.js";
import { allValues, contextKey, decodeView, encodeMessage, encodeView, readContext } from "../run/views.js";

/** Where a stored view differs from the fold of its run's stream. */
export type ViewDifference = { runId: string; what: string };

export type RebuildReport = { runs: number; differences: ViewDifference[]; fixed: number };

/** The run view and context window the projector should have stored: a fold of the run's events. */
export function foldRun(runId: string, events: RecordedEvent[]): { view: RunState; messages: ChatMessage[] } {
  let view = initialState(runId);
  const messages: ChatMessage[] = [];
  for (const e of events) {
    messages.push(...messagesOf(view, e));
    view = evolve(view, e);
  }
  return { view, messages };
}

/** Every run with events in the EVENTS stream. */
export async function runIdsInStream(client: Client): Promise<string[]> {
  const jsm = await jetstreamManager(client.nc);
  const info = await jsm.streams.info(client.names.eventsStream, { subjects_filter: client.names.allRunsSubject });
  return Object.keys(info.state.subjects ?? {}).map((s) => client.names.runIdOfSubject(s));
}

/**
 * Folds every run's stream again and compares the result with the views in KV (run view and context window,
 * message by message); with `write`, stores the fold where they differ and removes views of runs that have no
 * events. Runs that move while this runs may show as differences (the projector is a few ms behind).
 */
export async function rebuildViews(client: Client, { write = false, concurrency = 16 } = {}): Promise<RebuildReport> {
  const { runs, context } = client.buckets;
  const inStream = await runIdsInStream(client);
  const differences: ViewDifference[] = [];
  let fixed = 0;
  const queue = [...inStream];
  const check = async (runId: string): Promise<void> => {
    const events = await client.events(runId);
    const { view, messages } = foldRun(runId, events);
    // The stored form leaves some fields out: compare what a view looks like once stored and read.
    const expected = decodeView(encodeView(view));
    const stored = await client.getRun(runId);
    const found: string[] = [];
    if (!stored) found.push("no view");
    else if (!isDeepStrictEqual(stored, expected)) {
      const keys = new Set([...Object.keys(stored), ...Object.keys(expected)]) as Set<keyof RunState>;
      const fields = [...keys].filter((k) => !isDeepStrictEqual(stored[k], expected[k]));
      found.push(`view differs in ${fields.join(", ")}${fields.includes("lastSeq") ? ` (stored at #${stored.lastSeq}, stream at #${view.lastSeq})` : ""}`);
    }
    const count = Math.max(messages.length, stored?.messageCount ?? 0);
    const storedMessages = await readContext(context, runId, count + 1);
    const wrong = storedMessages.flatMap((m, i) => (isDeepStrictEqual(m, messages[i]) ? [] : [i]));
    if (wrong.length > 0) found.push(`context messages ${wrong.join(", ")} differ or are missing`);
    if (found.length === 0) return;
    differences.push(...found.map((what) => ({ runId, what })));
    if (!write) return;
    await Promise.all(messages.map((m, i) => (wrong.includes(i) ? context.put(contextKey(runId, i), encodeMessage(m)) : undefined)));
    await Promise.all(wrong.filter((i) => i >= messages.length).map((i) => context.purge(contextKey(runId, i))));
    await runs.put(runId, encodeView(view));
    fixed++;
  };
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let runId = queue.shift(); runId !== undefined; runId = queue.shift()) await check(runId);
    }),
  );
  const known = new Set(inStream);
  for (const value of await allValues(runs)) {
    const view = decodeView(value);
    if (known.has(view.runId)) continue;
    differences.push({ runId: view.runId, what: "view of a run with no events" });
    if (write) {
      await runs.purge(view.runId);
      fixed++;
    }
  }
  return { runs: inStream.length, differences, fixed };
}
