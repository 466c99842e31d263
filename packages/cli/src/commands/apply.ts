import { readFile } from "node:fs/promises";
import { parseConfig } from "@smallchain/shared";
import { UserError, withClient, type GlobalOptions } from "../context.js";

export async function apply(file: string, opts: GlobalOptions & { output?: string }): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new UserError(`cannot read ${file}: ${(err as Error).message}`);
  }
  await withClient(opts, async (client) => {
    const config = parseConfig(text, file, await client.knownNames());
    const result = await client.apply(config, { file });
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    for (const key of result.changed) process.stdout.write(`${key.replace(".", "/")} configured\n`);
    for (const key of result.unchanged) process.stdout.write(`${key.replace(".", "/")} unchanged\n`);
    for (const run of result.runs) {
      process.stdout.write(`run/${run.name} ${run.created ? "started" : "exists"} (${run.runId})\n`);
    }
  });
}
