import { z } from "zod";

export const ToolCallRecord = z.object({ id: z.string(), name: z.string(), arguments: z.string() });
export type ToolCallRecord = z.infer<typeof ToolCallRecord>;

/** One entry of a context window, in the OpenAI chat format, as the next LLM call will send it. */
export const ChatMessage = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: z.string() }),
  z.object({ role: z.literal("user"), content: z.string() }),
  z.object({ role: z.literal("assistant"), content: z.string().nullable(), tool_calls: z.array(ToolCallRecord).optional() }),
  z.object({ role: z.literal("tool"), tool_call_id: z.string(), content: z.string() }),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;
