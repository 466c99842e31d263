import { z } from "zod";

/** Where a large result is: an object of the installation's blob store (`Blobs`), with its size and SHA-256. */
export const BlobRef = z.object({ object: z.string().min(1), bytes: z.number().int().nonnegative(), digest: z.string() });
export type BlobRef = z.infer<typeof BlobRef>;

export const ToolCallRecord = z.object({ id: z.string(), name: z.string(), arguments: z.string() });
export type ToolCallRecord = z.infer<typeof ToolCallRecord>;

/** One entry of a context window, in the OpenAI chat format, as the next LLM call will send it. */
export const ChatMessage = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: z.string() }),
  z.object({ role: z.literal("user"), content: z.string() }),
  z.object({ role: z.literal("assistant"), content: z.string().nullable(), tool_calls: z.array(ToolCallRecord).optional() }),
  /** `ref`: the whole result is in the object store, `content` holds its preview; the llm-worker sends the whole. */
  z.object({ role: z.literal("tool"), tool_call_id: z.string(), content: z.string(), ref: BlobRef.optional() }),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/** A message as the chat completions API takes it. */
export type WireMessage =
  | Exclude<ChatMessage, { role: "assistant" | "tool" }>
  | { role: "tool"; tool_call_id: string; content: string }
  | { role: "assistant"; content: string | null; tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[] };

/**
 * A context-window message in the chat completions wire format. A window keeps a tool call as events record
 * it, `{ id, name, arguments }`; the API wants `{ id, type: "function", function: { name, arguments } }` and
 * refuses anything else with a 400.
 */
export function wireMessage(m: ChatMessage): WireMessage {
  if (m.role === "tool") return { role: "tool", tool_call_id: m.tool_call_id, content: m.content };
  if (m.role !== "assistant") return m;
  const calls = m.tool_calls ?? [];
  return {
    role: "assistant",
    content: m.content,
    ...(calls.length > 0 && { tool_calls: calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })) }),
  };
}
