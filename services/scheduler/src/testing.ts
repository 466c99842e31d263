/**
 * Test helpers for the scheduler's pure functions (decide, effectsOf): a run's history built as recorded
 * events with increasing stream sequences, folded with `evolve`. No I/O; used by the unit tests only.
 */
import {
  AGENT_TOOL_PARAMETERS,
  BUILTIN_TOOLS,
  LlmConfig,
  evolve,
  initialState,
  type AgentSnapshot,
  type EventData,
  type EventType,
  type RecordedEvent,
  type RunEvent,
  type RunState,
  type ToolCallRecord,
  type ToolSnapshot,
} from "@smallchain/shared";

export const RUN_ID = "rparent";
export const T0 = 1_700_000_000_000;

export const testLlm: LlmConfig = LlmConfig.parse({ name: "test-llm", provider: "mock", replies: [{ content: "done" }] });

export const addTool: ToolSnapshot = {
  kind: "builtin",
  name: "add",
  description: BUILTIN_TOOLS.add.description,
  parameters: BUILTIN_TOOLS.add.parameters,
  builtin: "add",
};

export const operatorTool: ToolSnapshot = {
  kind: "agent",
  name: "calculator_operator",
  description: "delegate to the calculator operator",
  parameters: AGENT_TOOL_PARAMETERS,
  agent: "calculator_operator",
};

/** `add`, but every call waits for a human's approval, rejected after an hour. */
export const approvedAddTool: ToolSnapshot = { ...addTool, name: "careful_add", approval: { timeoutMs: 3_600_000, onTimeout: "reject" } };

export const humanTool: ToolSnapshot = {
  kind: "builtin",
  name: "ask",
  description: BUILTIN_TOOLS.human_input.description,
  parameters: BUILTIN_TOOLS.human_input.parameters,
  builtin: "human_input",
};

export const sleepTool: ToolSnapshot = {
  kind: "builtin",
  name: "sleep_until",
  description: BUILTIN_TOOLS.sleep_until.description,
  parameters: BUILTIN_TOOLS.sleep_until.parameters,
  builtin: "sleep_until",
};

export const callbackTool: ToolSnapshot = {
  kind: "callback",
  name: "pay",
  description: "pay an invoice; the bank calls back",
  parameters: { type: "object" },
  callback: { subject: "bank.payments", headers: {} },
  wait: { timeoutMs: 60_000, onTimeout: "fail" },
};

export function agentSnapshot(overrides: Partial<AgentSnapshot> = {}): AgentSnapshot {
  return {
    name: "assistant",
    systemPrompt: "you help with sums",
    maxSteps: 10,
    llm: testLlm,
    tools: [addTool, operatorTool],
    ...overrides,
  };
}

/** A tool call as the model returns it; `args` other than a string are JSON-encoded. */
export function toolCall(id: string, name: string, args: unknown = {}): ToolCallRecord {
  return { id, name, arguments: typeof args === "string" ? args : JSON.stringify(args) };
}

export const noUsage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };

/** Folds recorded events into a run view, from the initial state. */
export function fold(runId: string, events: readonly RecordedEvent[]): RunState {
  return events.reduce(evolve, initialState(runId));
}

/**
 * A run's event stream as JetStream would hold it: each event gets the next `seq` and a later `at`.
 * `state` is the fold of everything recorded so far.
 */
export class RunHistory {
  private readonly recorded: RecordedEvent[] = [];
  private clock: number;

  constructor(
    readonly runId: string = RUN_ID,
    start: number = T0,
  ) {
    this.clock = start;
  }

  get events(): readonly RecordedEvent[] {
    return this.recorded;
  }

  get state(): RunState {
    return fold(this.runId, this.recorded);
  }

  /** The newest recorded event. */
  get last(): RecordedEvent {
    const event = this.recorded.at(-1);
    if (!event) throw new Error("no event recorded yet");
    return event;
  }

  /** Records one event of this run with the given type and data. */
  add<T extends EventType>(type: T, data: EventData<T>): this {
    const seq = this.recorded.length + 1;
    const event = { id: `${this.runId}:test:${seq}`, type, v: 1, runId: this.runId, at: ++this.clock, data } as RunEvent;
    this.recorded.push({ ...event, seq });
    return this;
  }

  /** Records events decided elsewhere (e.g. `decide`'s output) as they are, with the next sequences. */
  record(...events: RunEvent[]): this {
    for (const event of events) this.recorded.push({ ...event, seq: this.recorded.length + 1 });
    return this;
  }

  requested(data: Partial<EventData<"RunRequested">> = {}): this {
    return this.add("RunRequested", { agent: "assistant", input: "add 3 and 4", depth: 0, rootRunId: this.runId, ...data });
  }

  started(agent: AgentSnapshot = agentSnapshot()): this {
    return this.add("RunStarted", { agent });
  }

  llmRequested(step: number): this {
    return this.add("LLMRequested", { step, llm: testLlm.name, messageCount: this.state.messageCount });
  }

  responded(step: number, reply: { content?: string | null; toolCalls?: ToolCallRecord[]; usage?: typeof noUsage; costUsd?: number }): this {
    return this.add("LLMResponded", {
      step,
      content: reply.content ?? null,
      toolCalls: reply.toolCalls ?? [],
      usage: reply.usage ?? noUsage,
      model: "mock",
      finishReason: reply.toolCalls?.length ? "tool_calls" : "stop",
      durationMs: 5,
      ...(reply.costUsd !== undefined && { costUsd: reply.costUsd }),
    });
  }

  completed(callId: string, result: string): this {
    return this.add("ToolCallCompleted", { callId, result });
  }

  failed(callId: string, error: string): this {
    return this.add("ToolCallFailed", { callId, error });
  }
}

/** A run that started with `agent` and whose first LLM call the scheduler has requested. */
export function runWaitingForLlm(agent: AgentSnapshot = agentSnapshot(), runId: string = RUN_ID): RunHistory {
  return new RunHistory(runId).requested().started(agent).llmRequested(1);
}
