import { TerminalError } from "@smallchain/shared";
import type { LlmReply, LlmRequest, Provider } from "./provider.js";

/**
 * Replays the llm's scripted replies: the run's N-th LLM call gets reply N (the last one repeats).
 * `{{last_tool_result}}` in a reply's content becomes the newest tool result in the context window.
 */
export function mockProvider(): Provider {
  return async ({ command, messages, onDelta }: LlmRequest): Promise<LlmReply> => {
    const replies = command.llm.replies ?? [];
    const reply = replies[Math.min(command.step, replies.length) - 1];
    if (!reply) throw new TerminalError(`mock llm "${command.llm.name}" has no replies`);
    const lastTool = [...messages].reverse().find((m) => m.role === "tool");
    const content = reply.content?.replaceAll("{{last_tool_result}}", lastTool?.content ?? "") ?? null;
    const toolCalls = (reply.tool_calls ?? []).map((c, i) => ({
      id: `call_${command.step}_${i}`,
      name: c.name,
      arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments),
    }));
    // Live like a streaming model: the answer goes out word by word.
    if (content && onDelta) for (const word of content.match(/\S+\s*/g) ?? []) onDelta(word);
    const promptChars = messages.reduce((n, m) => n + (m.content?.length ?? 0), 0);
    return {
      content,
      toolCalls,
      model: `mock/${command.llm.name}`,
      finishReason: toolCalls.length > 0 ? "tool_calls" : "stop",
      usage: reply.usage
        ? { promptTokens: reply.usage.prompt_tokens, completionTokens: reply.usage.completion_tokens, cachedTokens: 0 }
        : { promptTokens: Math.ceil(promptChars / 4), completionTokens: Math.ceil((content?.length ?? 0) / 4) + 8 * toolCalls.length, cachedTokens: 0 },
    };
  };
}
