import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { ForkError, collectGarbage, encodeView, rebuildViews, replayLlmCalls, type RecordedEvent } from "@smallchain/shared";
import { cli } from "../support/processes.js";
import { startStack, type Stack } from "../support/stack.js";

const TWO_STEPS = `
llms:
  - name: mock
    provider: mock
    replies:
      - { tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ] }
      - { content: "sum {{last_tool_result}}" }
agents:
  - { name: adder, llm: mock, tools: [ add ] }
  - { name: careful, llm: mock, tools: [ { tool: add, approval: required } ] }
tools:
  - { name: add, builtin: add }
tasks:
  - { name: sum, user_message: go, agent: adder }
  - { name: careful_sum, user_message: go, agent: careful }
`;

async function finishedRun(stack: Stack): Promise<{ runId: string; events: RecordedEvent[] }> {
  const { runId } = await stack.client.startRun({ task: "sum", name: "original" });
  expect((await stack.client.waitForRun(runId)).output).toBe("sum 3");
  return { runId, events: await stack.client.events(runId) };
}

const seqOf = (events: RecordedEvent[], type: RecordedEvent["type"]) => events.find((e) => e.type === type)!.seq;

describe("smallchain fork", () => {
  it("starts a run from a copy of another's events, with a replaced tool result, and carries on from there", async () => {
    await using stack = await startStack();
    await stack.apply(TWO_STEPS);
    const original = await finishedRun(stack);
    const at = seqOf(original.events, "ToolCallCompleted");

    const forked = await stack.client.fork(original.runId, at, { message: "42" });
    const view = await stack.client.waitForRun(forked.runId);
    expect(view).toMatchObject({ status: "Completed", output: "sum 42", name: `original (fork of ${original.runId} at #${at})`, rootRunId: forked.runId });
    expect(view.forkOf).toEqual({ runId: original.runId, atSeq: at, events: forked.events });

    const events = await stack.client.events(forked.runId);
    const copied = original.events.filter((e) => e.seq <= at);
    expect(events.slice(0, copied.length).map((e) => [e.type, e.id])).toEqual(copied.map((e) => [e.type, e.id.replace(original.runId, forked.runId)]));
    expect(events.slice(copied.length).map((e) => e.type)).toEqual(["LLMRequested", "LLMResponded", "RunCompleted"]);
    const window = await stack.client.contextWindow(forked.runId);
    expect(window.find((m) => m.role === "tool")?.content).toBe("42");
    // The original is untouched.
    expect((await stack.client.getRun(original.runId))?.output).toBe("sum 3");
  });

  it("runs again a tool call the copy requested but never finished", async () => {
    await using stack = await startStack();
    await stack.apply(TWO_STEPS);
    const original = await finishedRun(stack);
    const forked = await stack.client.fork(original.runId, seqOf(original.events, "ToolCallRequested"));
    expect((await stack.client.waitForRun(forked.runId)).output).toBe("sum 3");
    const events = await stack.client.events(forked.runId);
    expect(events.filter((e) => e.type === "ToolCallCompleted")).toHaveLength(1);
    // A copy carries no command (the original's were the original's): the copied call went out on the COMMANDS
    // stream once the copy was complete; the fork's own decision after it carries its command.
    expect(events.filter((e) => e.command !== undefined).map((e) => e.type)).toEqual(["LLMRequested"]);
    const jsm = await jetstreamManager(stack.nc);
    expect((await jsm.streams.info(stack.names.commandsStream)).state.last_seq).toBe(1);
  });

  it("can replace the user message of a fork taken before the first LLM call", async () => {
    await using stack = await startStack();
    await stack.apply(TWO_STEPS);
    const original = await finishedRun(stack);
    const forked = await stack.client.fork(original.runId, seqOf(original.events, "RunStarted"), { message: "add 1 and 2, please" });
    await stack.client.waitForRun(forked.runId);
    expect((await stack.client.contextWindow(forked.runId))[0]).toEqual({ role: "user", content: "add 1 and 2, please" });
  });

  it("refuses an unknown run, a sequence beyond the end, and one at or after the run's end", async () => {
    await using stack = await startStack();
    await stack.apply(TWO_STEPS);
    const original = await finishedRun(stack);
    const last = original.events.at(-1)!.seq;
    await expect(stack.client.fork("rnosuchrun", 1)).rejects.toThrow(new ForkError("run rnosuchrun not found (see: smallchain get runs)"));
    await expect(stack.client.fork(original.runId, last + 5)).rejects.toThrow(
      `sequence ${last + 5} is beyond the end of run ${original.runId} (its events: #${original.events[0]!.seq} to #${last})`,
    );
    await expect(stack.client.fork(original.runId, last)).rejects.toThrow(/ends run .* \(Completed\); fork at an earlier sequence/);

    const r = await cli(["--prefix", stack.prefix, "fork", original.runId, "--at", String(last + 5)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/beyond the end of run/);
  });
});

describe("smallchain replay", () => {
  it("shows the context window the model was sent at each LLM call, and its answers", async () => {
    await using stack = await startStack();
    await stack.apply(TWO_STEPS);
    const { runId, events } = await finishedRun(stack);
    const calls = replayLlmCalls(events);
    expect(calls.map((c) => [c.step, c.messages.length])).toEqual([
      [1, 1],
      [2, 3],
    ]);
    expect(calls[1]!.messages).toEqual([
      { role: "user", content: "go" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1_0", name: "add", arguments: '{"a":1,"b":2}' }] },
      { role: "tool", tool_call_id: "call_1_0", content: "3" },
    ]);
    expect(calls[1]!.response).toEqual({ content: "sum 3", toolCalls: [] });
    expect(calls[0]!.tools).toEqual(["add"]);

    const r = await cli(["--prefix", stack.prefix, "replay", runId]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/=== step 1 .* 1 messages {2}tools=\[add\]\n {4}0 user {6}go\n {2}--> add\(\{"a":1,"b":2\}\) \[call_1_0\]/);
    expect(r.stdout).toMatch(/=== step 2 .* 3 messages/);
    expect(r.stdout).toMatch(/ {4}2 tool {6}\[call_1_0\] 3\n {2}--> sum 3/);
    expect(r.stdout).toMatch(/=== completed: sum 3/);
    expect((await cli(["--prefix", stack.prefix, "replay", "rnosuchrun"])).stderr).toMatch(/run rnosuchrun not found/);
  });
});

describe("smallchain project --rebuild", () => {
  it("finds views that differ from their streams and fixes them with --write", async () => {
    await using stack = await startStack();
    await stack.apply(TWO_STEPS);
    const a = await finishedRun(stack);
    const b = await finishedRun(stack);
    expect(await rebuildViews(stack.client)).toEqual({ runs: 2, differences: [], fixed: 0 });

    const view = (await stack.client.getRun(a.runId))!;
    await stack.client.buckets.runs.put(a.runId, encodeView({ ...view, status: "Failed", step: 7 }));
    await stack.client.buckets.runs.delete(b.runId);
    await stack.client.buckets.runs.put("rghost", encodeView({ ...view, runId: "rghost" }));

    const r = await cli(["--prefix", stack.prefix, "project", "--rebuild"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${a.runId}: view differs in status, step`);
    expect(r.stdout).toContain(`${b.runId}: no view`);
    expect(r.stdout).toContain("rghost: view of a run with no events");
    expect(r.stdout).toContain("2 runs folded again: 3 differ (--write fixes them)");

    const w = await cli(["--prefix", stack.prefix, "project", "--rebuild", "--write"]);
    expect(w.code).toBe(0);
    expect(await rebuildViews(stack.client)).toEqual({ runs: 2, differences: [], fixed: 0 });
    expect((await stack.client.getRun(a.runId))?.status).toBe("Completed");
    expect(await stack.client.getRun(b.runId)).toMatchObject({ status: "Completed", output: "sum 3", lastSeq: b.events.at(-1)!.seq });
    expect(await stack.client.getRun("rghost")).toBeUndefined();
  });
});

describe("smallchain gc", () => {
  it("removes finished runs older than the age with everything they left, never a running one", async () => {
    await using stack = await startStack();
    await stack.apply(TWO_STEPS);
    const done = await finishedRun(stack);
    const { runId: waiting } = await stack.client.startRun({ task: "careful_sum" });
    await stack.client.waitForRun(waiting, { until: (v) => v.turn.phase === "tools" && v.turn.calls.some((c) => c.status === "awaitingApproval") });
    await new Promise((r) => setTimeout(r, 20));

    const dry = await cli(["--prefix", stack.prefix, "gc", "--older-than", "10ms", "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`${done.runId} +original +Completed`));
    expect(dry.stdout).toContain("would remove 1 run(s)");
    expect(await stack.client.events(done.runId)).toHaveLength(done.events.length);

    const r = await cli(["--prefix", stack.prefix, "gc", "--older-than", "10ms"]);
    expect(r.stdout).toContain("removed 1 run(s)");
    expect(await stack.client.events(done.runId)).toEqual([]);
    expect(await stack.client.getRun(done.runId)).toBeUndefined();
    expect(await stack.client.contextWindow(done.runId)).toEqual([]);
    // The waiting run keeps everything; listings skip the removed run although the run index still names it.
    expect((await stack.client.getRun(waiting))?.status).toBe("Running");
    expect((await stack.client.listRuns({ limit: 10 })).runs.map((v) => v.runId)).toEqual([waiting]);
    const list = await cli(["--prefix", stack.prefix, "get", "runs"]);
    expect(list.stdout).toContain(waiting);
    expect(list.stdout).not.toContain(done.runId);
    expect(await collectGarbage(stack.client, { olderThanMs: 1 })).toEqual([]);
    expect((await cli(["--prefix", stack.prefix, "gc", "--older-than", "soon"])).stderr).toMatch(/--older-than: "soon" is not a duration/);
  });
});
