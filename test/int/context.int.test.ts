import { describe, expect, it } from "vitest";
import { displayStatus, replayLlmCalls, wireMessage } from "@smallchain/shared";
import { startFakeOpenAI, turnOf } from "../support/fake-openai.js";
import { startStack } from "../support/stack.js";

const config = (baseUrl: string) => `
llms:
  - { name: gpt, provider: openai, model: gpt-4o, base_url: ${baseUrl} }
agents:
  - { name: careful, system_prompt: "agent careful", llm: gpt, tools: [ { tool: add, approval: required } ] }
  - { name: adder, system_prompt: "agent adder", llm: gpt, tools: [ add ] }
tools:
  - { name: add, builtin: add }
tasks:
  - { name: careful_sum, user_message: "add 1 and 2", agent: careful }
  - { name: sum, user_message: "add", agent: adder }
`;


describe("context windows folded from the runs' streams", () => {
  it("a fresh llm-worker serves a run in mid-flight with its whole window, read from the run's stream", async () => {
    const fake = await startFakeOpenAI((req) =>
      turnOf(req) === 0 ? { toolCalls: [{ name: "add", arguments: { a: 1, b: 2 } }] } : { content: `the sum is ${String(req.messages.at(-1)?.content)}` },
    );
    try {
      await using stack = await startStack(["scheduler", "projector", "tool-worker"]);
      const first = await stack.start("llm-worker");
      await stack.apply(config(fake.url));
      // Too big for the LLM command (256 KiB): the first step's window is read from the stream as well.
      const input = `add 1 and 2. ${"Context. ".repeat(32_000)}`;
      const { runId } = await stack.client.startRun({ task: "careful_sum", message: input });
      await stack.client.waitForRun(runId, { until: (s) => displayStatus(s) === "AwaitingApproval" });
      expect(fake.requests).toHaveLength(1);

      // The worker that served step 1 goes; one that never saw the run takes step 2.
      await first.stop();
      await stack.start("llm-worker");
      await stack.client.control.approval(runId, "s1c0", { approved: true });
      const done = await stack.client.waitForRun(runId);
      expect(done).toMatchObject({ status: "Completed", output: "the sum is 3" });

      expect(fake.requests).toHaveLength(2);
      const [call1, call2] = replayLlmCalls(await stack.client.events(runId));
      expect(fake.requests[0]!.messages).toEqual(call1!.messages.map(wireMessage));
      expect(fake.requests[1]!.messages).toEqual(call2!.messages.map(wireMessage));
      expect(fake.requests[1]!.messages).toEqual([
        { role: "system", content: "agent careful" },
        { role: "user", content: input },
        { role: "assistant", content: null, tool_calls: [{ id: "call_0_0", type: "function", function: { name: "add", arguments: '{"a":1,"b":2}' } }] },
        { role: "tool", tool_call_id: "call_0_0", content: "3" },
      ]);
      expect(await stack.client.contextWindow(runId)).toEqual([...call2!.messages, { role: "assistant", content: "the sum is 3" }]);
    } finally {
      await fake.close();
    }
  });

  it("sends every LLM call its run's window with two llm-workers taking the steps of many runs in turn", async () => {
    const STEPS = 4;
    const fake = await startFakeOpenAI((req) => {
      const turn = turnOf(req);
      return turn < STEPS - 1 ? { toolCalls: [{ name: "add", arguments: { a: turn, b: 10 } }] } : { content: `done after ${turn} sums` };
    });
    try {
      await using stack = await startStack(["scheduler", "projector", "tool-worker", "llm-worker", "llm-worker"]);
      await stack.apply(config(fake.url));
      const runIds = await Promise.all(Array.from({ length: 12 }, async (_, i) => (await stack.client.startRun({ task: "sum", message: `run ${i}: add` })).runId));
      const views = await Promise.all(runIds.map((id) => stack.client.waitForRun(id, { timeoutMs: 30_000 })));
      expect(views.map((v) => [v.status, v.output])).toEqual(runIds.map(() => ["Completed", `done after ${STEPS - 1} sums`]));

      expect(fake.requests).toHaveLength(runIds.length * STEPS);
      for (const [i, runId] of runIds.entries()) {
        const calls = replayLlmCalls(await stack.client.events(runId));
        const sent = fake.requests.filter((r) => r.messages[1]?.content === `run ${i}: add`);
        expect(sent.map((r) => r.messages)).toEqual(calls.map((c) => c.messages.map(wireMessage)));
        expect(sent.map((r) => r.messages.length)).toEqual([2, 4, 6, 8]);
      }
    } finally {
      await fake.close();
    }
  });
});
