export { startLlmWorker, type LlmWorkerOptions } from "./llm-worker.js";
export { classify, openAIProvider } from "./providers/openai.js";
export type { LlmReply, LlmRequest, Provider } from "./providers/provider.js";
