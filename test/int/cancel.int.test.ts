import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { eventually } from "../support/processes.js";
import { startStack } from "../support/stack.js";

describe("cancelling a run with work in flight", () => {
  it("stops its running tool, drops its queued commands, and records no result for them", async () => {
    await using stack = await startStack();
    const dir = mkdtempSync(join(tmpdir(), "sc-cancel-"));
    const marks = join(dir, "marks");
    const applied = await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: slow, arguments: {} } ]
      - content: "never reached"
agents: [ { name: patient, llm: mock, tools: [ slow ] } ]
tools:
  - name: slow
    parameters: { type: object }
    executor:
      command:
        runtime: bash
        script: 'echo started >> "${marks}"; sleep 20; echo finished >> "${marks}"'
tasks: [ { name: t, user_message: go, agent: patient } ]
runs: [ { name: cancel-me, task: t } ]
`);
    const runId = applied.runs[0]!.runId;
    await eventually(() => existsSync(marks), 15_000, "the tool to start");

    const cancelledAt = Date.now();
    await stack.client.control.cancel(runId, { reason: "changed my mind" });

    const view = await stack.client.waitForRun(runId, { timeoutMs: 10_000 });
    expect(view.status).toBe("Cancelled");
    // The tool was stopped well before its 20 s, acked, and left no result in the stream.
    const jsm = await jetstreamManager(stack.nc);
    await eventually(async () => (await jsm.consumers.info(stack.names.commandsStream, stack.names.consumers.toolWorker)).num_ack_pending === 0, 10_000, "the command to be acked");
    expect(Date.now() - cancelledAt).toBeLessThan(10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(readFileSync(marks, "utf8").trim().split("\n")).toEqual(["started"]);
    const events = await stack.client.events(runId);
    expect(events.filter((e) => e.type === "ToolCallCompleted" || e.type === "ToolCallFailed")).toEqual([]);
    // Written on the lane of the state it was checked against (a call of the step out), where a scheduler's decision
    // from that state would go: one of the two lands.
    expect(events.at(-1)).toMatchObject({ type: "RunCancelled", lane: "tool" });

    // A command of the cancelled run that comes (again) later is dropped unrun.
    const before = readFileSync(marks, "utf8");
    const { encode } = await import("@smallchain/shared");
    const started = events.find((e) => e.type === "RunStarted");
    const tool = started?.type === "RunStarted" ? started.data.agent.tools[0]! : undefined;
    await stack.client.store.publisher.publish(stack.names.toolCommandSubject("command"), encode({ id: `${runId}:tool:s1c0:again`, runId, callId: "s1c0", step: 1, tool, args: {} }));
    await eventually(async () => (await jsm.consumers.info(stack.names.commandsStream, stack.names.consumers.toolWorker)).num_pending === 0, 10_000, "the late command to be taken");
    await new Promise((r) => setTimeout(r, 500));
    expect(readFileSync(marks, "utf8")).toBe(before);
  });
});
