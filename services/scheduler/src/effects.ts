import { findCall, isCopying, runsInToolWorker, type ChatMessage, type LlmCommand, type RecordedEvent, type RunEvent, type RunState, type ToolCommand } from "@smallchain/shared";

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
  | { kind: "untimer"; runId: string; callId: string };

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
      if (!agent || state.turn.phase !== "llm" || state.turn.step !== event.data.step) return [];
      return [
        {
          kind: "llm",
          command: {
            id: `${state.runId}:llm:${event.data.step}`,
            runId: state.runId,
            step: event.data.step,
            messageCount: event.data.messageCount,
            llm: agent.llm,
            tools: agent.tools.map((t) => ({ name: t.name, description: t.description, parameters: t.parameters })),
            ...(fitsInCommand(state.llmDelta) && { delta: state.llmDelta }),
          },
        },
      ];
    }
    case "ToolCallRequested": {
      if (event.data.kind !== "tool") return [];
      const call = findCall(state, event.data.callId);
      const tool = agent?.tools.find((t) => t.name === event.data.tool);
      if (!call || call.status !== "requested" || !tool || tool.approval || !runsInToolWorker(tool)) return [];
      return [{ kind: "tool", command: { id: `${state.runId}:tool:${call.callId}`, runId: state.runId, callId: call.callId, step: event.data.step, tool, args: event.data.args } }];
    }
    case "ToolCallApproved": {
      const call = findCall(state, event.data.callId);
      const tool = agent?.tools.find((t) => t.name === call?.tool);
      const effects: Effect[] = [{ kind: "untimer", runId: state.runId, callId: event.data.callId }];
      if (!call || call.status !== "approved" || !tool || !runsInToolWorker(tool) || state.turn.phase !== "tools") return effects;
      const command: ToolCommand = { id: `${state.runId}:tool:${call.callId}`, runId: state.runId, callId: call.callId, step: state.turn.step, tool, args: parseArgs(call.arguments) };
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
        args: parseArgs(call.arguments),
        token: event.data.token,
      };
      return [...timerOf(state, call.callId), { kind: "tool", command }];
    }
    case "ToolCallRejected":
    case "HumanInputReceived":
    case "TimerFired":
      return [{ kind: "untimer", runId: state.runId, callId: event.data.callId }];
    case "ChildRunRequested": {
      const call = findCall(state, event.data.callId);
      if (!call || call.status !== "delegated") return [];
      const { childRunId, agent: childAgent, input, callId } = event.data;
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
            data: {
              agent: childAgent,
              input,
              depth: state.depth + 1,
              rootRunId: state.rootRunId,
              parent: { runId: state.runId, callId },
              name: `${state.name ?? state.runId}/${childAgent}`,
              ...(state.task !== undefined && { task: state.task }),
            },
          },
        },
      ];
    }
    case "RunCompleted":
    case "RunFailed":
    case "RunCancelled": {
      const parent = state.parent;
      if (!parent) return [];
      const base = { id: `${parent.runId}:done:${parent.callId}`, v: 1 as const, runId: parent.runId, at: now, causationId: event.id };
      const result: RunEvent =
        event.type === "RunCompleted"
          ? { ...base, type: "ToolCallCompleted", data: { callId: parent.callId, result: event.data.output } }
          : {
              ...base,
              type: "ToolCallFailed",
              data: {
                callId: parent.callId,
                error: event.type === "RunFailed" ? `agent ${state.agentName} failed: ${event.data.reason}` : `agent ${state.agentName} was cancelled`,
              },
            };
      return [{ kind: "append", expectNew: false, event: result }];
    }
    case "ToolCallCompleted":
    case "ToolCallFailed": {
      // A callback's result ends its wait: its timer is no longer needed (other calls have none).
      const call = findCall(state, event.data.callId);
      const tool = call && agent?.tools.find((t) => t.name === call.tool);
      return tool?.kind === "callback" && tool.wait?.timeoutMs !== undefined ? [{ kind: "untimer", runId: state.runId, callId: event.data.callId }] : [];
    }
    case "RunRequested":
    case "RunStarted":
    case "LLMResponded":
    case "LLMFailed":
      return [];
  }
}

/** The wake-up of a call that waits with a deadline. */
function timerOf(state: RunState, callId: string): Effect[] {
  const call = findCall(state, callId);
  return call?.deadline ? [{ kind: "timer", runId: state.runId, callId, dueAt: call.deadline.dueAt }] : [];
}

function parseArgs(text: string): unknown {
  try {
    return text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return text;
  }
}
