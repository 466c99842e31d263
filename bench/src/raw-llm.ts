import { openAIProvider } from "@smallchain/llm-worker";
import { LlmConfig, type ChatMessage } from "@smallchain/shared";

/** An LLM call the raw chain's worker makes for each LLM command: `step` is the chain's step, from 1. */
export type RawLlmCall = (chain: number, step: number) => Promise<void>;

/**
 * The llm-worker's own openai provider (the SDK and its transport) against the fake server at `baseUrl`, called
 * with the window the bench's agent would send at that step: its runs are `stepsPerRun` steps long, so at step s
 * of a chain the window holds the (s - 1) mod stepsPerRun earlier calls of add and their results. The raw chain
 * that makes it is the baseline of the openai deployment with the same client cost in it.
 */
export function rawOpenAICall(baseUrl: string, stepsPerRun: number): RawLlmCall {
  const provider = openAIProvider({});
  const llm = LlmConfig.parse({ name: "bench", provider: "openai", model: "fake", base_url: baseUrl });
  const tools = [{ name: "add", description: "adds a and b", parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } } }];
  const windows: ChatMessage[][] = [[{ role: "user", content: "go" }]];
  const windowAt = (earlier: number): ChatMessage[] => {
    for (let i = windows.length; i <= earlier; i++) {
      const id = `call_${i}`;
      windows.push([
        ...windows[i - 1]!,
        { role: "assistant", content: null, tool_calls: [{ id, name: "add", arguments: '{"a":1,"b":2}' }] },
        { role: "tool", tool_call_id: id, content: "3" },
      ]);
    }
    return windows[earlier]!;
  };
  return async (chain, step) => {
    const messages = windowAt((step - 1) % stepsPerRun);
    const command = { id: `${chain}:llm:${step}`, runId: String(chain), step, messageCount: messages.length, llm, tools };
    await provider({ command, messages, signal: new AbortController().signal });
  };
}
