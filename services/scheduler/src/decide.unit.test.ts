import { laneOf, type EventOf, type EventType, type RunEvent } from "@smallchain/shared";
import { describe, expect, it } from "vitest";
import { childRunId, decide } from "./decide.js";
import { withCommands } from "./effects.js";
import { RUN_ID, RunHistory, T0, addTool, agentSnapshot, approvedAddTool, operatorTool, runWaitingForLlm, toolCall } from "./testing.js";

const NOW = T0 + 1_000_000;

function ofType<T extends EventType>(events: RunEvent[], type: T): EventOf<T>[] {
  return events.filter((e): e is EventOf<T> => e.type === type);
}

describe("decide", () => {
  describe("given a requested run", () => {
    it("starts it with the resolved agent's snapshot", () => {
      // given
      const run = new RunHistory().requested();
      const agent = agentSnapshot();
      // when
      const events = decide(run.state, { now: NOW, agent: { ok: true, spec: agent } });
      // then
      expect(events).toEqual([{ id: `${RUN_ID}:started`, type: "RunStarted", v: 1, runId: RUN_ID, at: NOW, data: { agent } }]);
    });

    it("fails it with the resolver's message when the agent is unknown", () => {
      const run = new RunHistory().requested({ agent: "ghost" });
      const error = 'agent "ghost" not found in the applied config (agents: assistant, calculator_operator)';

      const events = decide(run.state, { now: NOW, agent: { ok: false, error } });

      expect(events).toEqual([{ id: `${RUN_ID}:failed`, type: "RunFailed", v: 1, runId: RUN_ID, at: NOW, data: { reason: error } }]);
      expect(ofType(events, "RunFailed")[0]?.data.reason).toContain('"ghost"');
    });

    it("decides nothing until the agent has been resolved", () => {
      const run = new RunHistory().requested();

      expect(decide(run.state, { now: NOW })).toEqual([]);
    });
  });

  describe("given a fork whose copied events are still being stored", () => {
    const forkOf = { runId: "roriginal", atSeq: 9, events: 3 };

    it("decides nothing until every copied event is in its stream", () => {
      const run = new RunHistory().requested({ forkOf }).started();

      expect(decide(run.state, { now: NOW })).toEqual([]);
    });

    it("carries on from the copy once it is complete", () => {
      const run = new RunHistory().requested({ forkOf }).started().add("LLMRequested", { step: 1, llm: "test-llm", messageCount: 2 });
      const answered = run.add("LLMResponded", { step: 1, content: "done", toolCalls: [], usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 }, model: "m", finishReason: "stop", durationMs: 1 });

      expect(decide(answered.state, { now: NOW }).map((e) => e.type)).toEqual(["RunCompleted"]);
    });
  });

  it("decides nothing for a run without events", () => {
    const run = new RunHistory();

    expect(decide(run.state, { now: NOW, agent: { ok: true, spec: agentSnapshot() } })).toEqual([]);
  });

  describe("given a started run", () => {
    it("requests the first LLM call over the system prompt and the user message", () => {
      const run = new RunHistory().requested().started();

      const events = decide(run.state, { now: NOW });

      expect(events).toEqual([
        { id: `${RUN_ID}:llm:1`, type: "LLMRequested", v: 1, runId: RUN_ID, at: NOW, data: { step: 1, llm: "test-llm", messageCount: 2 } },
      ]);
    });

    it("counts only the user message when the agent has no system prompt", () => {
      const run = new RunHistory().requested().started(agentSnapshot({ systemPrompt: "" }));

      const [event] = ofType(decide(run.state, { now: NOW }), "LLMRequested");

      expect(event?.data.messageCount).toBe(1);
    });

    it("waits while the LLM call is in flight", () => {
      const run = runWaitingForLlm();

      expect(decide(run.state, { now: NOW })).toEqual([]);
    });
  });

  describe("given an answer without tool calls", () => {
    it("completes the run with the answer's content", () => {
      const run = runWaitingForLlm().responded(1, { content: "3 + 4 = 7" });

      const events = decide(run.state, { now: NOW });

      expect(events).toEqual([
        { id: `${RUN_ID}:completed`, type: "RunCompleted", v: 1, runId: RUN_ID, at: NOW, data: { output: "3 + 4 = 7" } },
      ]);
    });

    it("completes with an empty output when the content is null", () => {
      const run = runWaitingForLlm().responded(1, { content: null });

      expect(ofType(decide(run.state, { now: NOW }), "RunCompleted")[0]?.data.output).toBe("");
    });
  });

  describe("given an answer with tool calls", () => {
    const twoAdds = [toolCall("call_a", "add", { a: 3, b: 4 }), toolCall("call_b", "add", { a: 5, b: 3 })];

    it("requests one tool call per call the model made, and nothing else", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: twoAdds });

      const events = decide(run.state, { now: NOW });

      expect(events).toEqual([
        {
          id: `${RUN_ID}:call:s1c0`,
          type: "ToolCallRequested",
          v: 1,
          runId: RUN_ID,
          at: NOW,
          data: { step: 1, callId: "s1c0", toolCallId: "call_a", tool: "add", args: { a: 3, b: 4 }, kind: "tool" },
        },
        {
          id: `${RUN_ID}:call:s1c1`,
          type: "ToolCallRequested",
          v: 1,
          runId: RUN_ID,
          at: NOW,
          data: { step: 1, callId: "s1c1", toolCallId: "call_b", tool: "add", args: { a: 5, b: 3 }, kind: "tool" },
        },
      ]);
    });

    it("treats empty arguments as an empty object", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "add", "  ")] });

      expect(ofType(decide(run.state, { now: NOW }), "ToolCallRequested")[0]?.data).toMatchObject({ args: {}, kind: "tool" });
    });

    it("waits until every tool call of the step has a result", () => {
      // given: both calls requested, one answered
      const run = runWaitingForLlm().responded(1, { toolCalls: twoAdds });
      run.record(...decide(run.state, { now: NOW }));
      expect(decide(run.state, { now: NOW })).toEqual([]);
      run.completed("s1c0", "7");
      // when / then: still one open call
      expect(decide(run.state, { now: NOW })).toEqual([]);
    });

    it("requests the next LLM call once every call has a result, counting the assistant and tool messages", () => {
      // given: system + user, then the assistant's tool calls and two tool results
      const run = runWaitingForLlm().responded(1, { toolCalls: twoAdds });
      run.record(...decide(run.state, { now: NOW }));
      run.completed("s1c0", "7").failed("s1c1", "the adder is on fire");
      // when
      const events = decide(run.state, { now: NOW });
      // then
      expect(events).toEqual([
        { id: `${RUN_ID}:llm:2`, type: "LLMRequested", v: 1, runId: RUN_ID, at: NOW, data: { step: 2, llm: "test-llm", messageCount: 5 } },
      ]);
    });

    it("delegates an agent tool to a child run with a deterministic id", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "calculator_operator", { message: "add 3 and 4" })] });

      const events = decide(run.state, { now: NOW });

      expect(events).toEqual([
        {
          id: `${RUN_ID}:call:s1c0`,
          type: "ToolCallRequested",
          v: 1,
          runId: RUN_ID,
          at: NOW,
          data: { step: 1, callId: "s1c0", toolCallId: "call_a", tool: "calculator_operator", args: { message: "add 3 and 4" }, kind: "agent" },
        },
        {
          id: `${RUN_ID}:child:s1c0`,
          type: "ChildRunRequested",
          v: 1,
          runId: RUN_ID,
          at: NOW,
          data: { callId: "s1c0", childRunId: childRunId(RUN_ID, "s1c0"), agent: "calculator_operator", input: "add 3 and 4" },
        },
      ]);
    });

    it("derives the same child id from the same parent and call, and a different one for another call or parent", () => {
      const id = childRunId(RUN_ID, "s1c0");

      expect(childRunId(RUN_ID, "s1c0")).toBe(id);
      expect(childRunId(RUN_ID, "s1c1")).not.toBe(id);
      expect(childRunId("rother", "s1c0")).not.toBe(id);
      expect(id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    });

    it("gives each agent call of a step its own child run", () => {
      const run = runWaitingForLlm().responded(1, {
        toolCalls: [toolCall("call_a", "calculator_operator", { message: "one" }), toolCall("call_b", "calculator_operator", { message: "two" })],
      });

      const children = ofType(decide(run.state, { now: NOW }), "ChildRunRequested");

      expect(children.map((c) => c.data.input)).toEqual(["one", "two"]);
      expect(new Set(children.map((c) => c.data.childRunId)).size).toBe(2);
    });

    it("passes the JSON arguments as the child's input when there is no message", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "calculator_operator", { task: "add" })] });

      expect(ofType(decide(run.state, { now: NOW }), "ChildRunRequested")[0]?.data.input).toBe('{"task":"add"}');
    });

    it("refuses a call to an unknown tool, naming it and the agent's tools", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "multiply", { a: 2, b: 3 })] });

      const events = decide(run.state, { now: NOW });

      expect(events).toEqual([
        {
          id: `${RUN_ID}:call:s1c0`,
          type: "ToolCallRequested",
          v: 1,
          runId: RUN_ID,
          at: NOW,
          data: { step: 1, callId: "s1c0", toolCallId: "call_a", tool: "multiply", args: '{"a":2,"b":3}', kind: "invalid" },
        },
        {
          id: `${RUN_ID}:done:s1c0`,
          type: "ToolCallFailed",
          v: 1,
          runId: RUN_ID,
          at: NOW,
          data: { callId: "s1c0", error: 'unknown tool "multiply" (tools of agent assistant: add, calculator_operator)' },
        },
      ]);
    });

    it("says the agent has no tools when refusing a call of a tool-less agent", () => {
      const run = runWaitingForLlm(agentSnapshot({ tools: [] })).responded(1, { toolCalls: [toolCall("call_a", "add")] });

      expect(ofType(decide(run.state, { now: NOW }), "ToolCallFailed")[0]?.data.error).toBe(
        'unknown tool "add" (tools of agent assistant: none)',
      );
    });

    it("refuses a call whose arguments are not valid JSON, quoting them", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "add", '{"a": 3, "b": ')] });

      const events = decide(run.state, { now: NOW });

      expect(events.map((e) => e.type)).toEqual(["ToolCallRequested", "ToolCallFailed"]);
      expect(ofType(events, "ToolCallRequested")[0]?.data).toMatchObject({ callId: "s1c0", kind: "invalid", args: '{"a": 3, "b": ' });
      const error = ofType(events, "ToolCallFailed")[0]?.data.error;
      expect(error).toMatch(/^arguments are not valid JSON \(.+\): \{"a": 3, "b": $/);
    });

    it("decides the valid and the invalid calls of one step together", () => {
      const run = runWaitingForLlm().responded(1, {
        toolCalls: [toolCall("call_a", "add", { a: 1, b: 2 }), toolCall("call_b", "nope"), toolCall("call_c", "calculator_operator", { message: "x" })],
      });

      const events = decide(run.state, { now: NOW });

      expect(events.map((e) => e.id)).toEqual([
        `${RUN_ID}:call:s1c0`,
        `${RUN_ID}:call:s1c1`,
        `${RUN_ID}:done:s1c1`,
        `${RUN_ID}:call:s1c2`,
        `${RUN_ID}:child:s1c2`,
      ]);
    });

    it("after a partial decision returns just the tool calls still missing", () => {
      // given: the first of three ToolCallRequested was recorded, then the scheduler crashed
      const run = runWaitingForLlm().responded(1, {
        toolCalls: [toolCall("call_a", "add", { a: 1, b: 2 }), toolCall("call_b", "add", { a: 3, b: 4 }), toolCall("call_c", "add", { a: 5, b: 6 })],
      });
      const full = decide(run.state, { now: NOW });
      run.record(full[0]!);
      // when
      const rest = decide(run.state, { now: NOW });
      // then
      expect(rest).toEqual(full.slice(1));
      expect(rest.map((e) => e.id)).toEqual([`${RUN_ID}:call:s1c1`, `${RUN_ID}:call:s1c2`]);
    });

    it("after a partial delegation requests just the missing child run", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "calculator_operator", { message: "add" })] });
      const [requested, child] = decide(run.state, { now: NOW });
      run.record(requested!);

      expect(decide(run.state, { now: NOW })).toEqual([child]);
    });

    it("after a partial refusal records just the missing failure", () => {
      // given: the invalid call's ToolCallRequested was recorded, its ToolCallFailed was not
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "multiply", { a: 2, b: 3 })] });
      const [requested, failed] = decide(run.state, { now: NOW });
      run.record(requested!);
      // when / then: the call must not stay open forever
      expect(decide(run.state, { now: NOW })).toEqual([failed]);
    });

    it("after a partial refusal of invalid JSON records just the missing failure", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "add", "{not json")] });
      const [requested, failed] = decide(run.state, { now: NOW });
      run.record(requested!);

      expect(decide(run.state, { now: NOW })).toEqual([failed]);
    });

    it("decides nothing again for calls recorded in a different order", () => {
      // appendDecision appends the tail of a decision concurrently: a failure may land before its request
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "nope"), toolCall("call_b", "calculator_operator", { message: "m" })] });
      const decided = decide(run.state, { now: NOW });
      run.record(...[...decided].reverse());

      expect(decide(run.state, { now: NOW })).toEqual([]);
    });
  });

  describe("given a failed LLM call", () => {
    it("fails the run with the step and the error", () => {
      const run = runWaitingForLlm().add("LLMFailed", { step: 1, error: "401 unauthorized", retryable: false });

      const events = decide(run.state, { now: NOW });

      expect(events).toEqual([
        {
          id: `${RUN_ID}:failed`,
          type: "RunFailed",
          v: 1,
          runId: RUN_ID,
          at: NOW,
          data: { reason: "LLM call of step 1 failed: 401 unauthorized" },
        },
      ]);
    });
  });

  describe("given max_steps", () => {
    it("fails the run when the last allowed step ends in tool calls", () => {
      const run = runWaitingForLlm(agentSnapshot({ maxSteps: 1 })).responded(1, { toolCalls: [toolCall("call_a", "add", { a: 1, b: 1 })] });
      run.record(...decide(run.state, { now: NOW }));
      run.completed("s1c0", "2");

      const events = decide(run.state, { now: NOW });

      expect(events).toEqual([
        { id: `${RUN_ID}:budget:0`, type: "BudgetExceeded", v: 1, runId: RUN_ID, at: NOW, data: { limit: "max_steps", value: 1, used: 1, action: "fail" } },
        { id: `${RUN_ID}:failed`, type: "RunFailed", v: 1, runId: RUN_ID, at: NOW, data: { reason: "max_steps (1) reached without a final answer" } },
      ]);
    });

    it("still allows the last step's LLM call", () => {
      const run = runWaitingForLlm(agentSnapshot({ maxSteps: 2 })).responded(1, { toolCalls: [toolCall("call_a", "add", { a: 1, b: 1 })] });
      run.record(...decide(run.state, { now: NOW }));
      run.completed("s1c0", "2");

      expect(ofType(decide(run.state, { now: NOW }), "LLMRequested")[0]?.data.step).toBe(2);
    });
  });

  describe("given a terminal run", () => {
    const agent = { ok: true as const, spec: agentSnapshot() };

    it("decides nothing once completed", () => {
      const run = runWaitingForLlm().responded(1, { content: "7" });
      run.record(...decide(run.state, { now: NOW }));
      expect(run.state.status).toBe("Completed");

      expect(decide(run.state, { now: NOW, agent })).toEqual([]);
    });

    it("decides nothing once failed, even with calls left open", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("call_a", "add", { a: 1, b: 1 })] });
      run.add("RunFailed", { reason: "operator gave up" });

      expect(decide(run.state, { now: NOW, agent })).toEqual([]);
    });

    it("decides nothing once cancelled", () => {
      const run = new RunHistory().requested().add("RunCancelled", { reason: "user" });
      expect(run.state.status).toBe("Cancelled");

      expect(decide(run.state, { now: NOW, agent })).toEqual([]);
    });
  });

  describe("is deterministic", () => {
    it("returns deep-equal events for the same state and input, with ids derived from the run", () => {
      const histories = [
        new RunHistory().requested(),
        new RunHistory().requested().started(),
        runWaitingForLlm().responded(1, { content: "7" }),
        runWaitingForLlm().responded(1, {
          toolCalls: [toolCall("a", "add", { a: 1, b: 2 }), toolCall("b", "calculator_operator", { message: "m" }), toolCall("c", "x", "{")],
        }),
        runWaitingForLlm().add("LLMFailed", { step: 1, error: "boom", retryable: true }),
      ];
      const input = { now: NOW, agent: { ok: true as const, spec: agentSnapshot({ tools: [addTool, operatorTool] }) } };

      for (const run of histories) {
        const first = decide(run.state, input);
        const second = decide(structuredClone(run.state), structuredClone(input));
        expect(first.length).toBeGreaterThan(0);
        expect(second).toEqual(first);
        for (const event of first) {
          expect(event.id.startsWith(`${RUN_ID}:`)).toBe(true);
          expect(event.runId).toBe(RUN_ID);
          expect(event.at).toBe(NOW);
        }
      }
    });

    it("gives distinct ids to the events of one decision", () => {
      const run = runWaitingForLlm().responded(1, {
        toolCalls: [toolCall("a", "add", { a: 1, b: 2 }), toolCall("b", "calculator_operator", { message: "m" }), toolCall("c", "x", "{")],
      });

      const ids = decide(run.state, { now: NOW }).map((e) => e.id);

      expect(new Set(ids).size).toBe(ids.length);
    });
  });

  describe("lanes", () => {
    it("decides at each state only what its lane can carry: LLM calls where it is llm, tool calls where it is tool", () => {
      // A run of two steps, driven by decide itself: two calls (one to be approved, left to time out), then an answer.
      const agent = agentSnapshot({ tools: [addTool, approvedAddTool] });
      const run = new RunHistory().requested();
      const lanes: [string, string[]][] = [];
      const replies = [{ toolCalls: [toolCall("t1", "add", { a: 1, b: 2 }), toolCall("t2", "careful_add", { a: 3, b: 4 })] }, { content: "3" }];
      let now = NOW;
      for (let round = 0; round < 20 && run.state.status !== "Completed"; round++) {
        const state = run.state;
        const events = withCommands(state, decide(state, { now, agent: { ok: true, spec: agent } }));
        if (events.length > 0) {
          lanes.push([laneOf(state), events.map((e) => e.type)]);
          for (const e of events) {
            if (e.command && e.type === "LLMRequested") expect(laneOf(state)).toBe("llm");
            if (e.command && e.type === "ToolCallRequested") expect(laneOf(state)).toBe("tool");
          }
          run.record(...events);
          continue;
        }
        // Nothing to decide: the run waits for a worker, or for the approval's deadline.
        if (state.turn.phase === "llm") run.responded(state.step, replies[state.step - 1]!);
        else if (state.turn.phase === "tools" && state.turn.calls.some((c) => c.status === "requested")) run.completed("s1c0", "3");
        else now += 7_200_000;
      }
      expect(run.state.status).toBe("Completed");
      expect(lanes).toEqual([
        ["ev", ["RunStarted"]],
        ["llm", ["LLMRequested"]],
        ["tool", ["ToolCallRequested", "ToolCallRequested", "ToolCallAwaitingApproval"]],
        ["tool", ["TimerFired"]],
        ["llm", ["LLMRequested"]],
        ["ev", ["RunCompleted"]],
      ]);
    });
  });
});
