import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Blobs, Duration, collectGarbage, shownEvent } from "@smallchain/shared";
import { age } from "../format.js";
import { table } from "../table.js";
import { UserError, withClient, type GlobalOptions } from "../context.js";

/** Removes finished runs that have not changed for a while; prints what it removed (or would). */
export async function gc(opts: GlobalOptions & { olderThan: string; dryRun?: boolean; archive?: string; output?: string }): Promise<void> {
  const parsed = Duration.safeParse(opts.olderThan);
  if (!parsed.success) throw new UserError(`--older-than: ${parsed.error.issues[0]?.message ?? "not a duration"}`);
  const archive = opts.archive;
  if (archive) await mkdir(archive, { recursive: true });
  await withClient(opts, async (client) => {
    let blobs: Blobs | undefined;
    const removed = await collectGarbage(client, {
      olderThanMs: parsed.data,
      dryRun: opts.dryRun ?? false,
      ...(archive && {
        // The events, one JSON per line; a large result kept in the object store beside them, whole.
        archive: async (view, events) => {
          await writeFile(join(archive, `${view.runId}.jsonl`), events.map((e) => JSON.stringify(shownEvent(e))).join("\n") + "\n");
          for (const e of events) {
            if (e.type !== "ToolCallCompleted" || !e.data.resultRef) continue;
            blobs ??= await Blobs.open(client.nc, client.names);
            await writeFile(join(archive, `${view.runId}.${e.data.callId}.result`), await blobs.text(e.data.resultRef));
          }
        },
      }),
    });
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify({ dryRun: opts.dryRun ?? false, removed }, null, 2)}\n`);
      return;
    }
    if (removed.length === 0) {
      process.stdout.write(`No finished runs older than ${opts.olderThan}.\n`);
      return;
    }
    const rows = removed.map((r) => ({ ID: r.runId, NAME: r.name ?? "", STATUS: r.status, "LAST CHANGE": age(r.updatedAt), EVENTS: r.events }));
    process.stdout.write(`${table(rows)}\n`);
    process.stdout.write(`${opts.dryRun ? "would remove" : "removed"} ${removed.length} run(s)${archive && !opts.dryRun ? `, archived to ${archive}` : ""}\n`);
  });
}
