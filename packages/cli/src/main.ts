import { Command, Option } from "commander";
import { ConfigError, ControlError } from "@smallchain/shared";
import { apply } from "./commands/apply.js";
import { describeRun } from "./commands/describe.js";
import { fork } from "./commands/fork.js";
import { gc } from "./commands/gc.js";
import { project } from "./commands/project.js";
import { replay } from "./commands/replay.js";
import { getEvents, getRuns } from "./commands/get.js";
import { run } from "./commands/run.js";
import { approve, getWaits, reject, respond } from "./commands/waits.js";
import { cancel, resume } from "./commands/lifecycle.js";
import { UserError, exitCodeOf, type GlobalOptions } from "./context.js";

// `smallchain get events | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const program = new Command("smallchain")
  .description("Durable, distributed AI agents on NATS JetStream")
  .option("--nats <url>", "NATS server URL(s), comma-separated (default: $NATS_URL or nats://127.0.0.1:4222)")
  .option("--prefix <prefix>", "name prefix of streams, buckets and subjects", process.env.SC_PREFIX ?? "sc")
  .showHelpAfterError();

const globals = (): GlobalOptions => program.opts<GlobalOptions>();
const output = () => new Option("-o, --output <format>", "output format").choices(["table", "json", "wide"]);

program
  .command("apply")
  .description("apply llms, agents, tools and tasks from a file, and start its runs")
  .requiredOption("-f, --file <file>", "smallchain.yaml")
  .addOption(output())
  .action((o: { file: string; output?: string }) => apply(o.file, { ...globals(), ...o }));

program
  .command("run")
  .description("start a run of a task")
  .argument("<task>", "task name")
  .option("-m, --message <text>", "user message (default: the task's user_message)")
  .option("--name <name>", "a name for the run")
  .option("-w, --wait", "follow the run's events and wait for it to finish")
  .option("--timeout <seconds>", "with --wait: give up after this many seconds", "600")
  .option("--max-steps <n>", "fail (or pause) the run before LLM call n+1")
  .option("--max-tokens <n>", "limit the tokens of the run and its children")
  .option("--max-cost <usd>", "limit the spend of the run and its children, in US dollars")
  .option("--max-duration <duration>", "limit the run's wall-clock time, e.g. 10m, 2h")
  .addOption(new Option("--on-exceeded <action>", "when a limit is reached").choices(["fail", "pause"]))
  .addOption(output())
  .action((task: string, o: object) => run(task, { ...globals(), ...o }));

program
  .command("resume")
  .description("resume a paused run; without --add-*, the limit that paused it is lifted for the rest of the run")
  .argument("<run>", "run id")
  .option("--add-cost <usd>", "raise max_cost_usd by this many dollars")
  .option("--add-tokens <n>", "raise max_tokens")
  .option("--add-steps <n>", "raise max_steps")
  .option("--add-duration <duration>", "raise max_duration, e.g. 30m")
  .option("--by <name>", "who resumes (default: your user name)")
  .addOption(output())
  .action((runId: string, o: object) => resume(runId, { ...globals(), ...o }));

program
  .command("cancel")
  .description("cancel a run and every run it started")
  .argument("<run>", "run id")
  .option("--reason <text>", "why (recorded with the cancellation)")
  .option("--by <name>", "who cancels (default: your user name)")
  .addOption(output())
  .action((runId: string, o: object) => cancel(runId, { ...globals(), ...o }));

const get = program.command("get").description("list runs or events");
get
  .command("runs")
  .description("list runs, newest first: NAME STATUS AGENT TASK ID DEPTH")
  .option("--limit <n>", "at most this many (0: all)", "500")
  .option("--offset <n>", "skip this many newest first", "0")
  .addOption(output())
  .action((o: { output?: string; limit?: string; offset?: string }) => getRuns({ ...globals(), ...o }));
get
  .command("approvals")
  .description("list tool calls waiting for approval: RUN CALL TOOL ARGS WAITING DUE")
  .addOption(output())
  .action((o: { output?: string }) => getWaits("approval", { ...globals(), ...o }));
get
  .command("waits")
  .description("list every call waiting for a person or the outside: approvals, questions, callbacks")
  .addOption(output())
  .action((o: { output?: string }) => getWaits(undefined, { ...globals(), ...o }));
get
  .command("events")
  .description("print events, one line each")
  .option("--run <id>", "only this run's events")
  .option("-f, --follow", "keep printing new events")
  .option("--pretty", "colors and each event's full data")
  .addOption(output())
  .action((o: object) => getEvents({ ...globals(), ...o }));

program
  .command("approve")
  .description("approve a tool call that waits for approval (it runs then)")
  .argument("<run>", "run id")
  .argument("<call>", "call id (see: smallchain get approvals)")
  .option("--comment <text>", "a comment, recorded with the approval")
  .option("--by <name>", "who approves (default: your user name)")
  .option("--digest <digest>", "approve only if the call's arguments still have this digest")
  .addOption(output())
  .action((runId: string, callId: string, o: object) => approve(runId, callId, { ...globals(), ...o }));

program
  .command("reject")
  .description("reject a tool call that waits for approval: the agent is told, with your comment, and carries on")
  .argument("<run>", "run id")
  .argument("<call>", "call id (see: smallchain get approvals)")
  .option("--comment <text>", "why: the agent reads it")
  .option("--by <name>", "who rejects (default: your user name)")
  .addOption(output())
  .action((runId: string, callId: string, o: object) => reject(runId, callId, { ...globals(), ...o }));

program
  .command("respond")
  .description("answer an agent's question (human_input)")
  .argument("<run>", "run id")
  .argument("<call>", "call id (see: smallchain get waits)")
  .argument("<answer>", "the answer the agent receives")
  .option("--by <name>", "who answers (default: your user name)")
  .addOption(output())
  .action((runId: string, callId: string, answer: string, o: object) => respond(runId, callId, answer, { ...globals(), ...o }));

program
  .command("describe")
  .description("show a run: status, spend, context window, tool calls")
  .argument("<kind>", "run")
  .argument("<id>", "run id")
  .addOption(output())
  .action((kind: string, id: string, o: { output?: string }) => {
    if (kind !== "run") throw new UserError(`cannot describe "${kind}" (try: smallchain describe run ID)`);
    return describeRun(id, { ...globals(), ...o });
  });

program
  .command("fork")
  .description("start a new run that begins as RUN did up to event SEQ, then carries on from there")
  .argument("<run>", "run id")
  .requiredOption("--at <seq>", "the last event to copy (its sequence, as smallchain get events --run RUN shows it)")
  .option("-m, --message <text>", "replace the content of the last user or tool message up to SEQ")
  .option("--name <name>", "a name for the new run")
  .addOption(output())
  .action((runId: string, o: { at: string }) => fork(runId, { ...globals(), ...o }));

program
  .command("replay")
  .description("print a run step by step as the model saw it: the context window sent at each LLM call, and the answer")
  .argument("<run>", "run id")
  .option("--new-only", "at each step, print only the messages added since the previous one")
  .addOption(output())
  .action((runId: string, o: object) => replay(runId, { ...globals(), ...o }));

program
  .command("project")
  .description("check the views against the event streams")
  .option("--rebuild", "fold every run's events again and report where the stored views differ")
  .option("--write", "with --rebuild: store the rebuilt views where they differ")
  .addOption(output())
  .action((o: object) => project({ ...globals(), ...o }));

program
  .command("gc")
  .description("remove finished runs (completed, failed, cancelled) that have not changed for a while")
  .requiredOption("--older-than <age>", "e.g. 30d, 12h, 90m")
  .option("--dry-run", "only print what would be removed")
  .option("--archive <dir>", "write each run's events to DIR/<run>.jsonl before removing it")
  .addOption(output())
  .action((o: { olderThan: string }) => gc({ ...globals(), ...o }));

program
  .command("dev")
  .description("run scheduler, projector and both workers in this process (starts a local NATS if none answers)")
  .option("--apply <file>", "apply this file once the services run, and follow its runs")
  .option("--exit-when-done", "with --apply: exit when the file's runs have finished (exit 3 if one did not complete)")
  .option("-q, --quiet", "do not print events")
  // The services load only for dev: every other command starts faster without them.
  .action(async (o: object) => (await import("./commands/dev.js")).dev({ ...globals(), ...o }));

try {
  await program.parseAsync();
} catch (err) {
  const message = err instanceof ConfigError || err instanceof UserError || err instanceof ControlError ? err.message : `error: ${(err as Error).message}`;
  process.stderr.write(`${message}\n`);
  process.exitCode = exitCodeOf(err);
}
