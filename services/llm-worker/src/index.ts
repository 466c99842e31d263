export { startLlmWorker, type LlmWorkerOptions } from "./llm-worker.js";
export { classify } from "./providers/openai.js";
