import { runRequested, type AgentSnapshot, type EventStore, type RunEvent } from "@smallchain/shared";

/** A small agent snapshot, as a run's RunStarted holds it. */
const briefAgent: AgentSnapshot = {
  name: "a",
  systemPrompt: "be brief",
  maxSteps: 5,
  llm: { name: "m", provider: "openai" as const, model: "m", api_key_env: "OPENAI_API_KEY", parameters: {}, timeout_ms: 1000, stream: false },
  tools: [],
};

/** A run's first two events, as the scheduler writes them: requested (at 1), started with `briefAgent` (at 2). */
export function runStart(runId: string): [RunEvent, RunEvent] {
  return [
    runRequested(runId, 1, { agent: "a", task: "t", input: "hello" }),
    { id: `${runId}:started`, type: "RunStarted", v: 1, runId, at: 2, data: { agent: briefAgent } },
  ];
}

/** Appends a run's events as Smallchain writes them: its request expecting an empty run, the rest after it. */
export async function appendRun(store: EventStore, events: readonly RunEvent[]): Promise<void> {
  const [requested, ...rest] = events;
  if (requested) await store.append(requested, 0);
  for (const e of rest) await store.append(e);
}
