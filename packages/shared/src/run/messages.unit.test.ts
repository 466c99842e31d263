import { describe, expect, it } from "vitest";
import { wireMessage } from "./messages.js";

describe("wireMessage", () => {
  it("sends an assistant's tool calls as the chat completions API wants them, and every other message as it is", () => {
    expect(wireMessage({ role: "assistant", content: null, tool_calls: [{ id: "c1", name: "add", arguments: '{"a":1}' }] })).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [{ id: "c1", type: "function", function: { name: "add", arguments: '{"a":1}' } }],
    });
    expect(wireMessage({ role: "assistant", content: "hi", tool_calls: [] })).toEqual({ role: "assistant", content: "hi" });
    expect(wireMessage({ role: "tool", tool_call_id: "c1", content: "3" })).toEqual({ role: "tool", tool_call_id: "c1", content: "3" });
    expect(wireMessage({ role: "user", content: "x" })).toEqual({ role: "user", content: "x" });
  });
});
