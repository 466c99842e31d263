import { isDeepStrictEqual } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Client } from "../client.js";
import type { RecordedEvent } from "../events.js";
import { evolve, initialState, type RunState } from "../run/state.js";
import { allValues, decodeView, encodeView } from "../run/views.js";

/** Where a stored view differs from the fold of its run's stream. */
export type ViewDifference = { runId: string; what: string };

export type RebuildReport = { runs: number; differences: ViewDifference[]; fixed: number };

/** The run view the projector should have stored: a fold of the run's events. */
export function foldRun(runId: string, events: RecordedEvent[]): RunState {
  let view = initialState(runId);
  for (const e of events) view = evolve(view, e);
  return view;
}

/** Every run with events in the EVENTS stream. */
export async function runIdsInStream(client: Client): Promise<string[]> {
  const jsm = await jetstreamManager(client.nc);
  const info = await jsm.streams.info(client.names.eventsStream, { subjects_filter: client.names.allRunsSubject });
  // A run has two subjects (decisions and results).
  return [...new Set(Object.keys(info.state.subjects ?? {}).map((s) => client.names.runIdOfSubject(s)))];
}

/**
 * Folds every run's stream again and compares the result with the run views in KV; with `write`, stores the
 * fold where they differ and removes views of runs that have no events. Runs that move while this runs may
 * show as differences (the projector is a few ms behind). Context windows are not stored anywhere: whoever
 * needs one folds it from the stream, so there is nothing of theirs to compare.
 */
export async function rebuildViews(client: Client, { write = false, concurrency = 16 } = {}): Promise<RebuildReport> {
  const { runs } = client.buckets;
  const inStream = await runIdsInStream(client);
  const differences: ViewDifference[] = [];
  let fixed = 0;
  const queue = [...inStream];
  const check = async (runId: string): Promise<void> => {
    const view = foldRun(runId, await client.events(runId));
    // The stored form leaves some fields out: compare what a view looks like once stored and read.
    const expected = decodeView(encodeView(view));
    const stored = await client.getRun(runId);
    const what = stored ? differenceOf(stored, expected) : "no view";
    if (what === undefined) return;
    differences.push({ runId, what });
    if (!write) return;
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

/** How a stored view differs from the expected one (both in stored form), or undefined if they are equal. */
function differenceOf(stored: RunState, expected: RunState): string | undefined {
  if (isDeepStrictEqual(stored, expected)) return undefined;
  const keys = new Set([...Object.keys(stored), ...Object.keys(expected)]) as Set<keyof RunState>;
  const fields = [...keys].filter((k) => !isDeepStrictEqual(stored[k], expected[k]));
  return `view differs in ${fields.join(", ")}${fields.includes("lastSeq") ? ` (stored at #${stored.lastSeq}, stream at #${expected.lastSeq})` : ""}`;
}
