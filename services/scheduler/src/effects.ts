import { BUDGET_TIMER } from "./decide.js";
import {
  LlmCommand,
  ToolCommand,
  callArguments,
  encodeChecked,
  evolve,
  findCall,
  isCopying,
  isTerminal,
  llmAgentOf,
  runsInToolWorker,
  totalSpend,
  type ChatMessage,
  type EventOf,
  type RecordedEvent,
  type RunEvent,
  type RunState,
  type Spend,
} from "@smallchain/shared";

/** Above this many characters the newest messages stay out of the LLM command (NATS payloads are capped). */
const MAX_DELTA_CHARS = 256 * 1024;

function fitsInCommand(messages: ChatMessage[]): boolean {
  let chars = 0;
  for (const m of messages) chars += (m.content?.length ?? 0) + ("tool_calls" in m ? JSON.stringify(m.tool_calls ?? []).length : 0);
  return chars <= MAX_DELTA_CHARS;
}

/** What a recorded event asks of the world outside its run: the outbox of the event stream. */
export type Effect =
  | { kind: "llm"; command: LlmCommand }
  | { kind: "tool"; command: ToolCommand }
  /** An event for another run: a child's first event, or a child's result for its parent. */
  | { kind: "append"; event: RunEvent; expectNew: boolean }
  /** Wake this run at `dueAt` (the timers bucket wakes whichever scheduler is up), or no longer. */
  | { kind: "timer"; runId: string; callId: string; dueAt: number }
  | { kind: "untimer"; runId: string; callId: string }
  /** Tell the workers: commands of this run are dropped (and stopped, if running). */
  | { kind: "cancelled"; runId: string }
  /**
   * A priced LLM call counts toward the run's, agent's and task's spend in its budget hour. Recorded before the
   * run's next decision, so a budget window read by any decision after it includes it; idempotent by sequence.
   */
  | { kind: "spend"; where: { runId: string; agent: string; task?: string }; seq: number; at: number; spend: Spend };

/**
 * The effects of one event, given the run's current state (which may be ahead of the event). Pure. An effect
 * that the state shows as done already (the command answered, the child finished) is not asked again, so
 * re-handling an old event after a restart repeats nothing.
 */
export function effectsOf(state: RunState, event: RecordedEvent, now: number): Effect[] {
  // A fork's copied events take effect together once the copy is complete (see the scheduler).
  if (isCopying(state)) return [];
  const agent = state.agent;
  switch (event.type) {
    case "LLMRequested": {
      // A decision that carries its command was the command: the llm-worker read it from the run's stream.
      const command = event.command ? undefined : llmCommandOf(state, event);
      return command ? [{ kind: "llm", command }] : [];
    }
    case "ToolCallRequested": {
      const command = event.command ? undefined : toolCommandOf(state, event);
      return command ? [{ kind: "tool", command }] : [];
    }
    case "ToolCallApproved": {
      const call = findCall(state, event.data.callId);
      const tool = agent?.tools.find((t) => t.name === call?.tool);
      const effects: Effect[] = [{ kind: "untimer", runId: state.runId, callId: event.data.callId }];
      if (!call || call.status !== "approved" || !tool || !runsInToolWorker(tool) || state.turn.phase !== "tools") return effects;
      const command: ToolCommand = { id: `${state.runId}:tool:${call.callId}`, runId: state.runId, callId: call.callId, step: state.turn.step, tool, args: callArguments(call.arguments) };
      return [...effects, { kind: "tool", command }];
    }
    case "ToolCallAwaitingApproval":
    case "HumanInputRequested":
    case "TimerScheduled":
      return timerOf(state, event.data.callId);
    case "ToolCallAwaitingCallback": {
      const call = findCall(state, event.data.callId);
      const tool = agent?.tools.find((t) => t.name === call?.tool);
      if (!call || call.status !== "awaitingCallback" || tool?.kind !== "callback" || state.turn.phase !== "tools") return [];
      const command: ToolCommand = {
        id: `${state.runId}:tool:${call.callId}`,
        runId: state.runId,
        callId: call.callId,
        step: state.turn.step,
        tool,
        args: callArguments(call.arguments),
        token: event.data.token,
      };
      return [...timerOf(state, call.callId), { kind: "tool", command }];
    }
    case "ToolCallRejected":
    case "HumanInputReceived":
    case "TimerFired":
      return [{ kind: "untimer", runId: state.runId, callId: event.data.callId }];
    case "ChildRunRequested": {
      const { childRunId, agent: childAgent, input, callId, detached } = event.data;
      if (detached) {
        // Spawned: the parent does not wait, but a cancelled or ended parent starts nothing new.
        if (isTerminal(state) || !state.children?.some((c) => c.runId === childRunId && c.status === "Running")) return [];
      } else {
        const call = findCall(state, callId);
        if (!call || call.status !== "delegated") return [];
      }
      return [
        {
          kind: "append",
          expectNew: true,
          event: {
            id: `${childRunId}:requested`,
            type: "RunRequested",
            v: 1,
            runId: childRunId,
            at: now,
            causationId: event.id,
            ...(state.trace !== undefined && { trace: state.trace }),
            data: {
              agent: childAgent,
              input,
              depth: state.depth + 1,
              rootRunId: state.rootRunId,
              parent: { runId: state.runId, callId },
              name: `${state.name ?? state.runId}/${childAgent}`,
              ...((event.data.task ?? state.task) !== undefined && { task: event.data.task ?? state.task }),
              ...(detached && { detached: true }),
            },
          },
        },
      ];
    }
    case "RunCompleted":
    case "RunFailed":
    case "RunCancelled": {
      // An end that came after the run had ended (a cancel after completion) changed nothing, and does nothing.
      const status = event.type === "RunCompleted" ? "Completed" : event.type === "RunFailed" ? "Failed" : "Cancelled";
      if (state.status !== status) return [];
      const effects: Effect[] = event.type === "RunCancelled" ? [{ kind: "cancelled", runId: state.runId }, ...cancelChildren(state, event.id, now)] : [];
      const parent = state.parent;
      if (!parent) return effects;
      const spend = totalSpend(state);
      if (state.detached) {
        const data = {
          childRunId: state.runId,
          status,
          spend,
          ...(event.type === "RunCompleted" && { output: event.data.output }),
          ...(event.type === "RunFailed" && { error: event.data.reason }),
          ...(event.type === "RunCancelled" && { error: event.data.reason ?? "cancelled" }),
        } as const;
        const ended: RunEvent = { id: `${parent.runId}:child-ended:${state.runId}`, type: "ChildRunEnded", v: 1, runId: parent.runId, at: now, causationId: event.id, data };
        return [...effects, { kind: "append", expectNew: false, event: ended }];
      }
      const base = { id: `${parent.runId}:done:${parent.callId}`, v: 1 as const, runId: parent.runId, at: now, causationId: event.id };
      const result: RunEvent =
        event.type === "RunCompleted"
          ? { ...base, type: "ToolCallCompleted", data: { callId: parent.callId, result: event.data.output, childSpend: spend } }
          : {
              ...base,
              type: "ToolCallFailed",
              data: {
                callId: parent.callId,
                error: event.type === "RunFailed" ? `agent ${state.agentName} failed: ${event.data.reason}` : `agent ${state.agentName} was cancelled`,
                childSpend: spend,
              },
            };
      return [...effects, { kind: "append", expectNew: false, event: result }];
    }
    case "TaskCancelRequested": {
      const child = state.children?.find((c) => c.runId === event.data.childRunId);
      if (!child || child.status !== "Running") return [];
      return [cancelRun(child.runId, `cancelled by its parent run ${state.runId} (call ${event.data.callId})`, event.id, now)];
    }
    case "BudgetExceeded":
      return state.status === "Paused" && state.pause?.until !== undefined ? [{ kind: "timer", runId: state.runId, callId: BUDGET_TIMER, dueAt: state.pause.until }] : [];
    case "RunResumed":
      return event.data.auto ? [] : [{ kind: "untimer", runId: state.runId, callId: BUDGET_TIMER }];
    case "ChildRunEnded":
    case "TasksAwaited":
      return [];
    case "ToolCallCompleted":
    case "ToolCallFailed": {
      // A callback's result ends its wait: its timer is no longer needed (other calls have none).
      const call = findCall(state, event.data.callId);
      const tool = call && agent?.tools.find((t) => t.name === call.tool);
      return tool?.kind === "callback" && tool.wait?.timeoutMs !== undefined ? [{ kind: "untimer", runId: state.runId, callId: event.data.callId }] : [];
    }
    case "LLMResponded": {
      const { costUsd, usage } = event.data;
      if (costUsd === undefined) return [];
      const where = { runId: state.runId, agent: state.agentName, ...(state.task !== undefined && { task: state.task }) };
      return [{ kind: "spend", where, seq: event.seq, at: event.at, spend: { tokens: usage.promptTokens + usage.completionTokens, costUsd } }];
    }
    case "RunRequested":
    case "RunStarted":
    case "LLMFailed":
      return [];
  }
}

/** The LLM command an LLMRequested asks for, given the run's state with it folded (none if the run moved on). */
function llmCommandOf(state: RunState, event: EventOf<"LLMRequested">): LlmCommand | undefined {
  const agent = state.agent;
  if (!agent || state.turn.phase !== "llm" || state.turn.step !== event.data.step) return undefined;
  const delta = fitsInCommand(state.llmDelta) ? state.llmDelta : undefined;
  return {
    id: `${state.runId}:llm:${event.data.step}`,
    runId: state.runId,
    step: event.data.step,
    messageCount: event.data.messageCount,
    ...(delta && { delta }),
    // A worker reads nothing of the run for a command whose delta is the whole window: that command carries
    // the agent's llm and tools. Any other worker learns them from the run's stream with the window.
    ...(delta && delta.length >= event.data.messageCount && llmAgentOf(agent)),
  };
}

/** The tool command a ToolCallRequested asks for, given the run's state with it folded: none for a call that is not the tool-worker's (or waits for approval). */
function toolCommandOf(state: RunState, event: EventOf<"ToolCallRequested">): ToolCommand | undefined {
  if (event.data.kind !== "tool") return undefined;
  const call = findCall(state, event.data.callId);
  const tool = state.agent?.tools.find((t) => t.name === event.data.tool);
  if (!call || call.status !== "requested" || !tool || tool.approval || !runsInToolWorker(tool)) return undefined;
  return { id: `${state.runId}:tool:${call.callId}`, runId: state.runId, callId: call.callId, step: event.data.step, tool, args: event.data.args };
}

/**
 * A decision's events, each that sends work out (an LLM call, a tool-worker's tool call) carrying its command: the
 * workers take it from the decision once it is stored, and nothing is published apart from it. `state`: the run
 * before the decision. Each command is the one its event's effect would have published: built from the state the
 * whole decision leaves, as effects are.
 */
export function withCommands(state: RunState, events: RunEvent[]): RunEvent[] {
  if (!events.some((e) => e.type === "LLMRequested" || e.type === "ToolCallRequested")) return events;
  const after = events.reduce((s: RunState, e) => evolve(s, { ...e, seq: s.lastSeq + 1 }), state);
  return events.map((e) => {
    const command = e.type === "LLMRequested" ? llmCommandOf(after, e) : e.type === "ToolCallRequested" ? toolCommandOf(after, e) : undefined;
    if (!command) return e;
    return { ...e, command: encodeChecked(e.type === "LLMRequested" ? LlmCommand : ToolCommand, command, `command ${command.id}`) };
  });
}

/** A cancelled run cancels the children it waits for and the ones it spawned that still run; they cancel theirs. */
function cancelChildren(state: RunState, causationId: string, now: number): Effect[] {
  const delegated = state.turn.phase === "tools" ? state.turn.calls.filter((c) => c.status === "delegated" && c.childRunId).map((c) => c.childRunId!) : [];
  const spawned = (state.children ?? []).filter((c) => c.status === "Running").map((c) => c.runId);
  return [...delegated, ...spawned].map((id) => cancelRun(id, `its parent run ${state.runId} was cancelled`, causationId, now));
}

/** Appended without a sequence guard: a run that ended meanwhile folds it as nothing. */
function cancelRun(runId: string, reason: string, causationId: string, now: number): Effect {
  return { kind: "append", expectNew: false, event: { id: `${runId}:cancelled`, type: "RunCancelled", v: 1, runId, at: now, causationId, data: { reason } } };
}

/** The wake-up of a call that waits with a deadline. */
function timerOf(state: RunState, callId: string): Effect[] {
  const call = findCall(state, callId);
  return call?.deadline ? [{ kind: "timer", runId: state.runId, callId, dueAt: call.deadline.dueAt }] : [];
}
