import { describe, expect, it } from "vitest";
import { startStack } from "../support/stack.js";

const CONFIG = `
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ]
      - tool_calls: [ { name: ask, arguments: { question: "go on?" } } ]
      - content: "done {{last_tool_result}}"
agents: [ { name: stepper, llm: mock, tools: [ add, ask ] } ]
tools:
  - { name: add, builtin: add }
  - { name: ask, builtin: human_input }
tasks: [ { name: step, user_message: go, agent: stepper } ]
`;

describe("limits, resume and cancel from any NATS client", () => {
  it("takes a run's limits on sc.tasks.<task>, resumes it on sc.resume.<run> and cancels it on sc.cancel.<run>", async () => {
    await using stack = await startStack();
    await stack.apply(CONFIG);
    const n = stack.names;
    const request = async (subject: string, body: unknown) => (await stack.nc.request(subject, JSON.stringify(body), { timeout: 5000 })).json<Record<string, unknown>>();

    // Fails at its own max_steps, given on the ingress subject.
    await stack.client.store.publisher.publish(n.taskSubject("step"), new TextEncoder().encode(JSON.stringify({ runId: "rstrict", limits: { maxSteps: 1 } })));
    const strict = await stack.client.waitForRun("rstrict", { timeoutMs: 15_000 });
    expect(strict.status).toBe("Failed");
    expect(strict.error).toMatch(/max_steps/);

    // Pauses instead, then a resume request with one more step lets it go on to its question.
    await stack.client.store.publisher.publish(n.taskSubject("step"), new TextEncoder().encode(JSON.stringify({ runId: "rpaused", limits: { maxSteps: 1, onExceeded: "pause" } })));
    await stack.client.waitForRun("rpaused", { timeoutMs: 15_000, until: (v) => v.status === "Paused" });
    expect(await request(n.resumeSubject("rpaused"), { by: "ops", raise: { steps: 1 } })).toMatchObject({ ok: true, event: "RunResumed" });
    await stack.client.waitForRun("rpaused", { timeoutMs: 15_000, until: (v) => v.turn.phase === "tools" && v.turn.calls.some((c) => c.status === "awaitingHuman") });
    expect(await request(n.resumeSubject("rpaused"), {})).toMatchObject({ ok: false, code: "conflict" });

    // Cancelled while it waits for a human; a second cancel is refused.
    expect(await request(n.cancelSubject("rpaused"), { by: "ops", reason: "no longer needed" })).toMatchObject({ ok: true, event: "RunCancelled" });
    const cancelled = await stack.client.waitForRun("rpaused", { timeoutMs: 15_000 });
    expect(cancelled).toMatchObject({ status: "Cancelled", error: "cancelled by ops: no longer needed" });
    expect(await request(n.cancelSubject("rpaused"), {})).toMatchObject({ ok: false, code: "conflict" });
    expect(await request(n.cancelSubject("rnosuchrun"), {})).toMatchObject({ ok: false, code: "not_found" });
    expect(await stack.client.listWaits()).toEqual([]);
  });
});
