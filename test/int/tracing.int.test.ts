import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initTracing, type Tracing } from "@smallchain/shared";
import { startStack } from "../support/stack.js";

const exporter = new InMemorySpanExporter();
let tracing: Tracing | undefined;

describe("OpenTelemetry traces", () => {
  beforeAll(async () => {
    tracing = await initTracing("test", { exporter });
  });
  afterAll(async () => {
    await tracing?.shutdown();
  });

  it("makes one trace of a run: its request, the scheduler's decisions, every LLM and tool command, and its child run", async () => {
    await using stack = await startStack();
    const applied = await stack.apply(`
llms:
  - name: boss
    provider: mock
    replies:
      - tool_calls: [ { name: helper, arguments: { message: "add 1 and 2" } } ]
      - content: "done: {{last_tool_result}}"
  - name: worker
    provider: mock
    replies:
      - tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ]
      - content: "{{last_tool_result}}"
agents:
  - { name: lead, llm: boss, tools: [ { agent: helper } ] }
  - { name: helper, llm: worker, tools: [ add ] }
tools: [ { name: add, builtin: add } ]
tasks: [ { name: t, user_message: go, agent: lead } ]
runs: [ { name: traced-1, task: t }, { name: traced-2, task: t } ]
`);
    const [first, second] = await Promise.all(applied.runs.map((r) => stack.client.waitForRun(r.runId, { timeoutMs: 15_000 })));
    expect(first?.output).toBe("done: 3");
    await tracing!.flush();

    const spans = exporter.getFinishedSpans();
    const events = await stack.client.events(first!.runId);
    const childId = events.flatMap((e) => (e.type === "ChildRunRequested" ? [e.data.childRunId] : []))[0]!;
    const ofRuns = (ids: string[]) => spans.filter((s) => ids.includes(String(s.attributes["smallchain.run_id"])));
    const firstTrace = ofRuns([first!.runId, childId]);
    const traceIds = new Set(firstTrace.map((s) => s.spanContext().traceId));
    expect(traceIds.size).toBe(1);
    const names = firstTrace.map((s) => s.name);
    expect(names).toContain("run requested");
    expect(names.filter((n) => n === `llm ${stack.names.llmCommandSubject}`)).toHaveLength(4);
    expect(names.filter((n) => n === `tool ${stack.names.toolCommandSubject("builtin")}`)).toHaveLength(1);
    expect(names.filter((n) => n.startsWith("scheduler "))).not.toHaveLength(0);
    // Commands continue the trace through their headers: every worker span has a parent in it.
    for (const s of firstTrace.filter((s) => s.name.startsWith("llm ") || s.name.startsWith("tool "))) {
      expect(s.parentSpanContext?.traceId).toBe([...traceIds][0]);
    }
    const secondTrace = new Set(ofRuns([second!.runId]).map((s) => s.spanContext().traceId));
    expect(secondTrace.size).toBe(1);
    expect([...secondTrace][0]).not.toBe([...traceIds][0]);
  });
});
