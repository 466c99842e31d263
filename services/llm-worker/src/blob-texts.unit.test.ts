import { describe, expect, it } from "vitest";
import type { BlobRef, ChatMessage } from "@smallchain/shared";
import { BlobTexts } from "./blob-texts.js";

const ref = (object: string, bytes: number): BlobRef => ({ object, bytes, digest: `SHA-256=${object}` });

function fakeBlobs(texts: Record<string, string>) {
  const reads: string[] = [];
  return {
    reads,
    async text(r: BlobRef) {
      reads.push(r.object);
      return texts[r.object]!;
    },
  };
}

describe("BlobTexts", () => {
  it("puts each referenced result back whole, leaves other messages alone, and returns the same array when none refers to one", async () => {
    const blobs = fakeBlobs({ "r/c1": "a".repeat(10) });
    const texts = new BlobTexts(blobs);
    const plain: ChatMessage[] = [{ role: "user", content: "hi" }];
    expect(await texts.resolve(plain)).toBe(plain);
    const window: ChatMessage[] = [
      { role: "user", content: "hi" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", name: "dump", arguments: "{}" }] },
      { role: "tool", tool_call_id: "c1", content: "aaa… preview", ref: ref("r/c1", 10) },
    ];
    expect(await texts.resolve(window)).toEqual([window[0], window[1], { role: "tool", tool_call_id: "c1", content: "a".repeat(10) }]);
    // The window keeps its preview: nothing is changed in place.
    expect(window[2]).toMatchObject({ content: "aaa… preview" });
  });

  it("reads an object once while it is kept, and forgets the least recently used past its byte budget", async () => {
    const blobs = fakeBlobs({ a: "a".repeat(6), b: "b".repeat(6), c: "c".repeat(6) });
    const texts = new BlobTexts(blobs, 12);
    const msg = (o: string): ChatMessage[] => [{ role: "tool", tool_call_id: o, content: "…", ref: ref(o, 6) }];
    await texts.resolve(msg("a"));
    await texts.resolve(msg("b"));
    await texts.resolve(msg("a"));
    expect(blobs.reads).toEqual(["a", "b"]);
    // c makes 18 bytes: b, the least recently used, goes.
    await texts.resolve(msg("c"));
    await texts.resolve(msg("a"));
    await texts.resolve(msg("b"));
    expect(blobs.reads).toEqual(["a", "b", "c", "b"]);
  });
});
