import type { BlobRef, Blobs, ChatMessage } from "@smallchain/shared";

/**
 * Puts the whole of each offloaded tool result back into the messages sent to the model (the window holds a
 * preview and a reference). Keeps the texts it read, up to `maxBytes`, least recently used first out: the
 * later steps of a run send the same results again.
 */
export class BlobTexts {
  /** By object, least recently used first, with its size as the ref gives it. */
  private readonly texts = new Map<string, { text: string; bytes: number }>();
  private bytes = 0;

  constructor(
    private readonly blobs: Pick<Blobs, "text">,
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {}

  /** The messages with every referenced result whole; the same array when none refers to one. */
  async resolve(messages: ChatMessage[]): Promise<ChatMessage[]> {
    if (!messages.some((m) => m.role === "tool" && m.ref)) return messages;
    return Promise.all(messages.map(async (m) => (m.role === "tool" && m.ref ? { role: "tool" as const, tool_call_id: m.tool_call_id, content: await this.text(m.ref) } : m)));
  }

  private async text(ref: BlobRef): Promise<string> {
    const kept = this.texts.get(ref.object);
    if (kept !== undefined) {
      this.texts.delete(ref.object);
      this.texts.set(ref.object, kept);
      return kept.text;
    }
    const text = await this.blobs.text(ref);
    this.texts.set(ref.object, { text, bytes: ref.bytes });
    this.bytes += ref.bytes;
    for (const [object, old] of this.texts) {
      if (this.bytes <= this.maxBytes || object === ref.object) break;
      this.texts.delete(object);
      this.bytes -= old.bytes;
    }
    return text;
  }
}
