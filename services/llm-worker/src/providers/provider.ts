import type { ChatMessage, LlmCommand, ToolCallRecord, Usage } from "@smallchain/shared";

export type LlmReply = {
  content: string | null;
  toolCalls: ToolCallRecord[];
  usage: Usage;
  model: string;
  finishReason: string | null;
};

export type LlmRequest = {
  command: LlmCommand;
  messages: ChatMessage[];
  signal: AbortSignal;
};

/** Calls a model. Throws RetryableError (nak and retry later) or TerminalError (record LLMFailed). */
export type Provider = (request: LlmRequest) => Promise<LlmReply>;
