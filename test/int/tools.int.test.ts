import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { encode } from "@smallchain/shared";
import { adderConfig } from "../support/configs.js";
import { startStack } from "../support/stack.js";

describe("tools that fail", () => {
  it("turns a throwing, failing, hanging or unknown tool into ToolCallFailed, which the agent sees before going on", async () => {
    await using stack = await startStack();
    const applied = await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls:
          - { name: crashes, arguments: {} }
          - { name: exits, arguments: {} }
          - { name: hangs, arguments: {} }
          - { name: divide, arguments: { a: 1, b: 0 } }
          - { name: no_such_tool, arguments: {} }
          - { name: divide, arguments: "{ not json" }
      - tool_calls: [ { name: divide, arguments: { a: 9, b: 3 } } ]
      - content: "carried on: {{last_tool_result}}"
agents:
  - { name: worker, llm: mock, tools: [ crashes, exits, hangs, divide ] }
tools:
  - { name: divide, builtin: divide }
  - name: crashes
    parameters: { type: object }
    executor: { command: { runtime: node, script: "throw new Error('kaboom')" } }
  - name: exits
    parameters: { type: object }
    executor: { command: { runtime: python, script: "import sys; print('bad things', file=sys.stderr); sys.exit(3)" } }
  - name: hangs
    parameters: { type: object }
    executor: { command: { runtime: bash, script: "sleep 30", timeout_ms: 500 } }
tasks:
  - { name: t, user_message: go, agent: worker }
runs:
  - { name: failing-tools, task: t }
`);
    const runId = applied.runs[0]!.runId;
    const done = await stack.client.waitForRun(runId, { timeoutMs: 20_000 });
    expect(done.status).toBe("Completed");
    expect(done.output).toBe("carried on: 3");
    const failures = (await stack.client.events(runId)).flatMap((e) => (e.type === "ToolCallFailed" ? [e.data.error] : []));
    expect(failures).toHaveLength(6);
    expect(failures.join("\n")).toMatch(/kaboom/);
    expect(failures.join("\n")).toMatch(/exited with code 3: bad things/);
    expect(failures.join("\n")).toMatch(/timed out after 500 ms/);
    expect(failures.join("\n")).toMatch(/division by zero/);
    expect(failures.join("\n")).toMatch(/unknown tool "no_such_tool" \(tools of agent worker: crashes, exits, hangs, divide\)/);
    expect(failures.join("\n")).toMatch(/arguments are not valid JSON/);
    // The model got every error as a tool message.
    const window = await stack.client.contextWindow(runId);
    const toolMessages = window.filter((m) => m.role === "tool");
    expect(toolMessages.slice(0, 6).every((m) => m.content.startsWith("error: "))).toBe(true);
  });
});

describe("several schedulers at once", () => {
  it("never takes a decision twice with two schedulers and two projectors on the same runs", async () => {
    await using stack = await startStack(["scheduler", "scheduler", "projector", "llm-worker", "tool-worker", "tool-worker"]);
    const applied = await stack.apply(
      adderConfig(
        [
          "{ tool_calls: [ { name: add, arguments: { a: 1, b: 2 } }, { name: add, arguments: { a: 3, b: 4 } }, { name: add, arguments: { a: 5, b: 6 } } ] }",
          "{ tool_calls: [ { name: add, arguments: { a: 10, b: 20 } } ] }",
          '{ content: "sum {{last_tool_result}}" }',
        ],
        30,
      ),
    );
    const views = await Promise.all(applied.runs.map((r) => stack.client.waitForRun(r.runId, { timeoutMs: 30_000 })));
    expect(views.every((v) => v.status === "Completed" && v.output === "sum 30")).toBe(true);
    for (const r of applied.runs) {
      const events = await stack.client.events(r.runId);
      const ids = events.map((e) => e.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(events.filter((e) => e.type === "LLMRequested").map((e) => e.type === "LLMRequested" && e.data.step)).toEqual([1, 2, 3]);
      expect(events.filter((e) => e.type === "ToolCallRequested")).toHaveLength(4);
      expect(events.filter((e) => e.type === "RunCompleted")).toHaveLength(1);
    }
  });
});

describe("tools with side effects", () => {
  it("does not run a command tool again when its finished call's command comes back", async () => {
    await using stack = await startStack();
    const dir = mkdtempSync(join(tmpdir(), "sc-effects-"));
    const marker = join(dir, "ran");
    await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: effect, arguments: {} } ]
      - content: "result: {{last_tool_result}}"
agents:
  - { name: doer, llm: mock, tools: [ effect ] }
tools:
  - name: effect
    parameters: { type: object }
    executor: { command: { runtime: bash, script: 'echo "$SMALLCHAIN_IDEMPOTENCY_KEY" >> ${marker}; echo ran' } }
tasks:
  - { name: do, user_message: go, agent: doer }
`);
    // As if a worker ran the call and remembered its result, then died before recording it.
    const runId = "reffects1";
    const remembered = { id: `${runId}:done:s1c0`, type: "ToolCallCompleted", v: 1, runId, at: 1, data: { callId: "s1c0", result: "remembered" } };
    await stack.client.buckets.effects.put(`${runId}.tool.s1c0`, encode(remembered));
    await stack.client.startRun({ task: "do", runId });
    const done = await stack.client.waitForRun(runId);
    expect(done.output).toBe("result: remembered");
    expect(existsSync(marker)).toBe(false);

    // A fresh call runs once, gets the idempotency key, and is remembered.
    const second = await stack.client.startRun({ task: "do", runId: "reffects2" });
    expect((await stack.client.waitForRun(second.runId)).output).toBe("result: ran");
    expect(readFileSync(marker, "utf8").trim()).toBe("reffects2:tool:s1c0");
    expect((await stack.client.buckets.effects.get("reffects2.tool.s1c0"))?.operation).toBe("PUT");
  });
});
