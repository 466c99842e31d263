import { rebuildViews } from "@smallchain/shared";
import { UserError, withClient, type GlobalOptions } from "../context.js";

/** Folds every run's stream again and reports (and with --write fixes) where the stored views differ. */
export async function project(opts: GlobalOptions & { rebuild?: boolean; write?: boolean; output?: string }): Promise<void> {
  if (!opts.rebuild) throw new UserError("nothing to do: smallchain project --rebuild [--write]");
  await withClient(opts, async (client) => {
    const report = await rebuildViews(client, { write: opts.write ?? false });
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      for (const d of report.differences) process.stdout.write(`${d.runId}: ${d.what}${opts.write ? " (fixed)" : ""}\n`);
      const runs = new Set(report.differences.map((d) => d.runId)).size;
      process.stdout.write(
        report.differences.length === 0
          ? `${report.runs} runs folded again: every view matches its stream\n`
          : `${report.runs} runs folded again: ${runs} differ${opts.write ? `, ${report.fixed} fixed` : " (--write fixes them)"}\n`,
      );
    }
    // Differences left in place are worth a non-zero exit for scripts.
    if (report.differences.length > 0 && !opts.write) process.exitCode = 1;
  });
}
