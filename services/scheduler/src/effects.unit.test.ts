import { decodeRaw, type RecordedEvent, type RunEvent } from "@smallchain/shared";
import { describe, expect, it } from "vitest";
import { childRunId, decide } from "./decide.js";
import { effectsOf, withCommands } from "./effects.js";
import {
  RUN_ID,
  RunHistory,
  T0,
  addTool,
  agentSnapshot,
  approvedAddTool,
  callbackTool,
  humanTool,
  operatorTool,
  runWaitingForLlm,
  sleepTool,
  testLlm,
  toolCall,
} from "./testing.js";

const NOW = T0 + 1_000_000;

/** Records what `decide` decides for the run, as the scheduler does, and returns the recorded events. */
function decideAndRecord(run: RunHistory): RecordedEvent[] {
  const before = run.events.length;
  run.record(...decide(run.state, { now: NOW }));
  return run.events.slice(before);
}

function eventOf(run: RunHistory, id: string): RecordedEvent {
  const event = run.events.find((e) => e.id === id);
  if (!event) throw new Error(`no event ${id} in ${run.events.map((e) => e.id).join(", ")}`);
  return event;
}

describe("effectsOf", () => {
  describe("LLMRequested", () => {
    it("asks the llm-worker for the step, with the llm, the tool definitions and the message count", () => {
      const run = new RunHistory().requested().started();
      const [requested] = decideAndRecord(run);

      const effects = effectsOf(run.state, requested!, NOW);

      expect(effects).toEqual([
        {
          kind: "llm",
          command: {
            id: `${RUN_ID}:llm:1`,
            runId: RUN_ID,
            step: 1,
            messageCount: 2,
            llm: testLlm,
            tools: [
              { name: addTool.name, description: addTool.description, parameters: addTool.parameters },
              { name: operatorTool.name, description: operatorTool.description, parameters: operatorTool.parameters },
            ],
            delta: [
              { role: "system", content: "you help with sums" },
              { role: "user", content: "add 3 and 4" },
            ],
          },
        },
      ]);
    });

    it("carries the messages added since the previous LLM call, so no worker waits for the projector", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 1, b: 2 })] });
      decideAndRecord(run);
      run.completed("s1c0", "3");
      const [requested] = decideAndRecord(run);

      const [effect] = effectsOf(run.state, requested!, NOW);

      expect(effect).toMatchObject({
        kind: "llm",
        command: {
          delta: [
            { role: "assistant", content: null, tool_calls: [{ id: "a", name: "add", arguments: JSON.stringify({ a: 1, b: 2 }) }] },
            { role: "tool", tool_call_id: "a", content: "3" },
          ],
        },
      });
    });

    it("asks for a later step with that step's message count, without the llm and tools (the worker has them from the run)", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 1, b: 2 })] });
      decideAndRecord(run);
      run.completed("s1c0", "3");
      const [requested] = decideAndRecord(run);

      const [effect] = effectsOf(run.state, requested!, NOW);

      expect(effect).toMatchObject({ kind: "llm", command: { id: `${RUN_ID}:llm:2`, step: 2, messageCount: 4 } });
      // Its delta is not the whole window: a worker reads the run's stream for the rest if it lacks it, RunStarted included.
      const command = (effect as { command: Record<string, unknown> }).command;
      expect(command).not.toHaveProperty("llm");
      expect(command).not.toHaveProperty("tools");
    });

    it("asks nothing once the state has moved past that step", () => {
      const run = runWaitingForLlm();
      const requested = run.last;
      run.responded(1, { content: "7" });

      expect(effectsOf(run.state, requested, NOW)).toEqual([]);
    });

    it("asks nothing for an older step's request replayed after a restart", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 1, b: 2 })] });
      const step1 = eventOf(run, `${RUN_ID}:test:3`);
      decideAndRecord(run);
      run.completed("s1c0", "3");
      decideAndRecord(run);
      expect(run.state.turn).toEqual({ phase: "llm", step: 2 });

      expect(effectsOf(run.state, step1, NOW)).toEqual([]);
    });
  });

  describe("ToolCallRequested", () => {
    it("asks the tool-worker to run a tool call, with the tool's snapshot and the parsed arguments", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 3, b: 4 })] });
      const [requested] = decideAndRecord(run);

      const effects = effectsOf(run.state, requested!, NOW);

      expect(effects).toEqual([
        { kind: "tool", command: { id: `${RUN_ID}:tool:s1c0`, runId: RUN_ID, callId: "s1c0", step: 1, tool: addTool, args: { a: 3, b: 4 } } },
      ]);
    });

    it("asks one command per call of the step", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 1, b: 2 }), toolCall("b", "add", { a: 3, b: 4 })] });
      const recorded = decideAndRecord(run);

      const ids = recorded.flatMap((e) => effectsOf(run.state, e, NOW)).map((e) => (e.kind === "tool" ? e.command.id : e.kind));

      expect(ids).toEqual([`${RUN_ID}:tool:s1c0`, `${RUN_ID}:tool:s1c1`]);
    });

    it("asks nothing once the call has completed", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 3, b: 4 })] });
      const [requested] = decideAndRecord(run);
      run.completed("s1c0", "7");

      expect(effectsOf(run.state, requested!, NOW)).toEqual([]);
    });

    it("asks nothing once the call has failed", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 3, b: 4 })] });
      const [requested] = decideAndRecord(run);
      run.failed("s1c0", "timeout");

      expect(effectsOf(run.state, requested!, NOW)).toEqual([]);
    });

    it("runs nothing for an agent call or an invalid call", () => {
      const run = runWaitingForLlm().responded(1, {
        toolCalls: [toolCall("a", "calculator_operator", { message: "m" }), toolCall("b", "nope")],
      });
      const recorded = decideAndRecord(run);

      const requested = recorded.filter((e) => e.type === "ToolCallRequested");
      expect(requested.map((e) => e.type === "ToolCallRequested" && e.data.kind)).toEqual(["agent", "invalid"]);
      expect(requested.flatMap((e) => effectsOf(run.state, e, NOW))).toEqual([]);
    });
  });

  describe("ChildRunRequested", () => {
    it("appends the child's RunRequested one level deeper, pointing at its parent's call", () => {
      const run = new RunHistory().requested({ name: "nightly", task: "do_some_math" }).started().llmRequested(1);
      run.responded(1, { toolCalls: [toolCall("a", "calculator_operator", { message: "add 3 and 4" })] });
      const recorded = decideAndRecord(run);
      const child = recorded.find((e) => e.type === "ChildRunRequested")!;
      const childId = childRunId(RUN_ID, "s1c0");

      const effects = effectsOf(run.state, child, NOW);

      expect(effects).toEqual([
        {
          kind: "append",
          expectNew: true,
          event: {
            id: `${childId}:requested`,
            type: "RunRequested",
            v: 1,
            runId: childId,
            at: NOW,
            causationId: child.id,
            data: {
              agent: "calculator_operator",
              input: "add 3 and 4",
              depth: 1,
              rootRunId: RUN_ID,
              parent: { runId: RUN_ID, callId: "s1c0" },
              name: "nightly/calculator_operator",
              task: "do_some_math",
            },
          },
        },
      ]);
    });

    it("keeps the root run id and adds one to the depth of a nested parent", () => {
      const run = new RunHistory("rmiddle")
        .requested({ depth: 2, rootRunId: "rroot", parent: { runId: "rroot", callId: "s1c0" } })
        .started(agentSnapshot({ name: "calculator_operator" }))
        .llmRequested(1)
        .responded(1, { toolCalls: [toolCall("a", "calculator_operator", { message: "deeper" })] });
      const child = decideAndRecord(run).find((e) => e.type === "ChildRunRequested")!;

      const [effect] = effectsOf(run.state, child, NOW);

      expect(effect).toMatchObject({
        kind: "append",
        expectNew: true,
        event: { data: { depth: 3, rootRunId: "rroot", parent: { runId: "rmiddle", callId: "s1c0" }, name: "rmiddle/calculator_operator" } },
      });
    });

    it("appends nothing once the delegated call has a result", () => {
      const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "calculator_operator", { message: "m" })] });
      const child = decideAndRecord(run).find((e) => e.type === "ChildRunRequested")!;
      run.completed("s1c0", "7");

      expect(effectsOf(run.state, child, NOW)).toEqual([]);
    });
  });

  describe("a child run's end", () => {
    const parent = { runId: RUN_ID, callId: "s2c1" };
    /** A child whose RunRequested carries the parent, started and waiting for its LLM. */
    const child = () =>
      new RunHistory("rchild")
        .requested({ agent: "calculator_operator", depth: 1, rootRunId: RUN_ID, parent })
        .started(agentSnapshot({ name: "calculator_operator" }))
        .llmRequested(1);

    it("appends ToolCallCompleted with the child's output to the parent", () => {
      const run = child().responded(1, { content: "15" });
      const [completed] = decideAndRecord(run);

      const effects = effectsOf(run.state, completed!, NOW);

      expect(effects).toEqual([
        {
          kind: "append",
          expectNew: false,
          event: {
            id: `${RUN_ID}:done:s2c1`,
            type: "ToolCallCompleted",
            v: 1,
            runId: RUN_ID,
            at: NOW,
            causationId: completed!.id,
            data: { callId: "s2c1", result: "15", childSpend: { tokens: 0, costUsd: 0 } },
          },
        },
      ]);
    });

    it("appends ToolCallFailed with the child's reason to the parent", () => {
      const run = child().add("LLMFailed", { step: 1, error: "rate limited", retryable: true });
      const [failed] = decideAndRecord(run);

      const effects = effectsOf(run.state, failed!, NOW);

      expect(effects).toEqual([
        {
          kind: "append",
          expectNew: false,
          event: {
            id: `${RUN_ID}:done:s2c1`,
            type: "ToolCallFailed",
            v: 1,
            runId: RUN_ID,
            at: NOW,
            causationId: failed!.id,
            data: { callId: "s2c1", error: "agent calculator_operator failed: LLM call of step 1 failed: rate limited", childSpend: { tokens: 0, costUsd: 0 } },
          },
        },
      ]);
    });

    it("appends ToolCallFailed to the parent when the child is cancelled", () => {
      const run = child().add("RunCancelled", { reason: "user" });

      const [marked, effect] = effectsOf(run.state, run.last, NOW);

      // The workers hear of it (they drop its commands), and the parent gets the call's failure.
      expect(marked).toEqual({ kind: "cancelled", runId: run.state.runId });
      expect(effect).toMatchObject({
        kind: "append",
        event: { id: `${RUN_ID}:done:s2c1`, type: "ToolCallFailed", data: { callId: "s2c1", error: "agent calculator_operator was cancelled" } },
      });
    });

    it("appends nothing when a top-level run ends", () => {
      const run = runWaitingForLlm().responded(1, { content: "7" });
      const [completed] = decideAndRecord(run);

      expect(effectsOf(run.state, completed!, NOW)).toEqual([]);
    });

  });

  describe("LLMResponded", () => {
    it("records a priced call's spend for the run, its agent and its task, at the event's sequence and time", () => {
      const usage = { promptTokens: 1200, completionTokens: 300, cachedTokens: 0 };
      const run = new RunHistory().requested({ task: "sums" }).started().llmRequested(1).responded(1, { content: "7", usage, costUsd: 0.0042 });
      const responded = run.events.at(-1)!;

      expect(effectsOf(run.state, responded, NOW)).toEqual([
        { kind: "spend", where: { runId: RUN_ID, agent: "assistant", task: "sums" }, seq: responded.seq, at: responded.at, spend: { tokens: 1500, costUsd: 0.0042 } },
      ]);
    });

    it("records nothing for a call without a price", () => {
      const run = runWaitingForLlm().responded(1, { content: "7" });

      expect(effectsOf(run.state, run.events.at(-1)!, NOW)).toEqual([]);
    });
  });

  it("asks nothing of events that only record what happened", () => {
    const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 1, b: 2 })] });
    decideAndRecord(run);
    run.completed("s1c0", "3");

    for (const event of run.events.filter((e) => ["RunRequested", "RunStarted", "LLMResponded", "ToolCallCompleted"].includes(e.type))) {
      expect(effectsOf(run.state, event, NOW)).toEqual([]);
    }
  });
});

describe("withCommands", () => {
  const commandIn = (e: RunEvent): unknown => (e.command ? decodeRaw(e.command, "command") : undefined);

  it("puts into a decision the command its effect would have published, and the event then publishes none", () => {
    const run = new RunHistory().requested().started();
    const plain = decide(run.state, { now: NOW });
    const carried = withCommands(run.state, plain);

    const published = effectsOf(new RunHistory().requested().started().record(...plain).state, { ...plain[0]!, seq: 3 }, NOW);
    expect(published).toHaveLength(1);
    expect(commandIn(carried[0]!)).toEqual(published[0]!.kind === "llm" && published[0]!.command);
    run.record(...carried);
    expect(effectsOf(run.state, run.events.at(-1)!, NOW)).toEqual([]);
  });

  it("builds the commands from the state the whole decision leaves: the calls of one decision each carry their own", () => {
    const run = runWaitingForLlm().responded(1, { toolCalls: [toolCall("a", "add", { a: 1, b: 2 }), toolCall("b", "add", { a: 3, b: 4 })] });
    const carried = withCommands(run.state, decide(run.state, { now: NOW }));

    expect(carried.map((e) => e.type)).toEqual(["ToolCallRequested", "ToolCallRequested"]);
    expect(carried.map(commandIn)).toEqual([
      { id: `${RUN_ID}:tool:s1c0`, runId: RUN_ID, callId: "s1c0", step: 1, tool: addTool, args: { a: 1, b: 2 } },
      { id: `${RUN_ID}:tool:s1c1`, runId: RUN_ID, callId: "s1c1", step: 1, tool: addTool, args: { a: 3, b: 4 } },
    ]);
  });

  it("carries exactly the commands the decision's effects would have published, whatever its calls wait for", () => {
    const agent = agentSnapshot({ tools: [addTool, approvedAddTool, humanTool, sleepTool, callbackTool] });
    const calls = [
      toolCall("a", "add", { a: 1, b: 2 }),
      toolCall("b", "careful_add", { a: 3, b: 4 }),
      toolCall("c", humanTool.name, { question: "ok?" }),
      toolCall("d", sleepTool.name, { until: new Date(NOW + 60_000).toISOString() }),
      toolCall("e", callbackTool.name, { invoice: 42 }),
    ];
    for (const run of [new RunHistory().requested().started(agent), runWaitingForLlm(agent).responded(1, { toolCalls: calls })]) {
      const plain = decide(run.state, { now: NOW, newToken: () => "secret" });
      const carried = withCommands(run.state, plain);
      run.record(...plain);
      // The effects of the events that can carry a command (a callback's goes out with its wait's event, token and all).
      const published = run.events
        .slice(-plain.length)
        .filter((e) => e.type === "LLMRequested" || e.type === "ToolCallRequested")
        .flatMap((e) => effectsOf(run.state, e, NOW).flatMap((x) => (x.kind === "llm" || x.kind === "tool" ? [x.command] : [])));
      const inDecision = carried.flatMap((e) => (e.command ? [decodeRaw(e.command, "command")] : []));
      expect(inDecision).toEqual(published);
      expect(inDecision.length).toBeGreaterThan(0);
    }
  });

  it("puts none into a call that waits for approval, nor into events that send nothing out", () => {
    const run = runWaitingForLlm(agentSnapshot({ tools: [approvedAddTool] })).responded(1, { toolCalls: [toolCall("a", "careful_add", { a: 1, b: 2 })] });
    const carried = withCommands(run.state, decide(run.state, { now: NOW }));

    expect(carried.map((e) => e.type)).toContain("ToolCallRequested");
    expect(carried.every((e) => e.command === undefined)).toBe(true);
  });
});
