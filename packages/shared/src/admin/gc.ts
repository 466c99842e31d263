import { jetstreamManager } from "@nats-io/jetstream";
import { Blobs } from "../blobs.js";
import type { Client } from "../client.js";
import type { RecordedEvent } from "../events.js";
import { isTerminal, type RunState } from "../run/state.js";
import { allValues, decodeView } from "../run/views.js";

export type RemovedRun = { runId: string; name?: string; status: string; updatedAt: number; events: number };

export type GcOptions = {
  olderThanMs: number;
  now?: number;
  dryRun?: boolean;
  /** Called with a run's events before they are purged (e.g. to write them to a file); a throw keeps the run. */
  archive?: (view: RunState, events: RecordedEvent[]) => Promise<void>;
};

/**
 * Removes runs that ended (completed, failed, cancelled) and have not changed for `olderThanMs`: their events,
 * view, any leftover waits, timers and remembered effects, and their large tool results in the object store.
 * Running runs are never touched.
 * The run index keeps their entries; listings skip runs without a view.
 */
export async function collectGarbage(client: Client, opts: GcOptions): Promise<RemovedRun[]> {
  const now = opts.now ?? Date.now();
  const n = client.names;
  const jsm = await jetstreamManager(client.nc);
  const views = (await allValues(client.buckets.runs)).map(decodeView);
  const doomed = views
    .filter((v) => isTerminal(v) && v.updatedAt < now - opts.olderThanMs)
    .sort((a, b) => a.updatedAt - b.updatedAt || a.runId.localeCompare(b.runId));
  const removed: RemovedRun[] = [];
  for (const view of doomed) {
    const entry: RemovedRun = { runId: view.runId, status: view.status, updatedAt: view.updatedAt, events: view.eventCount, ...(view.name !== undefined && { name: view.name }) };
    if (!opts.dryRun) {
      if (opts.archive) await opts.archive(view, await client.events(view.runId));
      // Events first, the view last: a gc that dies half-way finds the run again next time.
      // Each of the run's four subjects by name (lookups by wildcard are not exact on NATS 2.9).
      entry.events = 0;
      for (const subject of n.runSubjects(view.runId)) {
        entry.events += (await jsm.streams.purge(n.eventsStream, { filter: subject })).purged;
      }
      for (const bucket of [n.waitsBucket, n.timersBucket, n.effectsBucket]) {
        await jsm.streams.purge(`KV_${bucket}`, { filter: `$KV.${bucket}.${view.runId}.>` });
      }
      await jsm.streams.purge(`KV_${n.runsBucket}`, { filter: `$KV.${n.runsBucket}.${view.runId}` });
    }
    removed.push(entry);
  }
  if (!opts.dryRun && removed.length > 0) {
    await (await Blobs.open(client.nc, n)).removeRuns(new Set(removed.map((r) => r.runId)));
  }
  return removed;
}
