import type { ChatMessage, ResolvedLlmCommand, ToolCallRecord, Usage } from "@smallchain/shared";

export type LlmReply = {
  content: string | null;
  toolCalls: ToolCallRecord[];
  usage: Usage;
  model: string;
  finishReason: string | null;
};

export type LlmRequest = {
  /** The command with its agent's llm and tools in place. */
  command: ResolvedLlmCommand;
  messages: ChatMessage[];
  signal: AbortSignal;
  /** Called with each piece of the answer's text as it arrives (streaming providers). */
  onDelta?: (text: string) => void;
};

/** Calls a model. Throws RetryableError (nak and retry later) or TerminalError (record LLMFailed). */
export type Provider = (request: LlmRequest) => Promise<LlmReply>;
