import { Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode, type RecordedEvent } from "@smallchain/shared";
import { cli } from "../support/processes.js";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { startStack } from "../support/stack.js";

const SIZE = 2_500_000;

const config = (baseUrl: string) => `
llms:
  - { name: gpt, provider: openai, model: gpt-4o, base_url: ${baseUrl} }
agents:
  - { name: reader, llm: gpt, tools: [ dump ] }
tools:
  - name: dump
    description: prints a big document
    parameters: { type: object }
    executor: { command: { runtime: node, script: "process.stdout.write('x'.repeat(${SIZE - 3}) + 'end')", max_output_bytes: 3000000 } }
tasks:
  - { name: read, user_message: "read the document", agent: reader }
`;

async function objectsOf(stack: { nc: NatsConnection; names: { blobsBucket: string } }) {
  const store = await new Objm(stack.nc).open(stack.names.blobsBucket);
  return (await store.list()).filter((o) => !o.deleted);
}

describe("tool results too large for an event", () => {
  it("go to the object store; the event keeps a preview, the model gets the whole, a fork gets its own copy, gc removes them with their runs", async () => {
    const fake = await startFakeOpenAI((req) => {
      const last = req.messages.at(-1);
      return last?.role === "tool" ? { content: `got ${String(last.content.length)} chars ending in ${String(last.content.slice(-3))}` } : { toolCalls: [{ name: "dump", arguments: {} }] };
    });
    try {
      await using stack = await startStack();
      await stack.apply(config(fake.url));
      const { runId } = await stack.client.startRun({ task: "read" });
      const done = await stack.client.waitForRun(runId, { timeoutMs: 30_000 });
      expect(done).toMatchObject({ status: "Completed", output: `got ${SIZE} chars ending in end` });

      const events = await stack.client.events(runId);
      const completed = events.find((e): e is Extract<RecordedEvent, { type: "ToolCallCompleted" }> => e.type === "ToolCallCompleted")!;
      expect(completed.data.resultRef).toMatchObject({ object: `${runId}/${completed.data.callId}`, bytes: SIZE });
      expect(completed.data.resultRef!.digest).toMatch(/^SHA-256=/);
      expect(completed.data.result).toContain(`${SIZE} bytes in all, in the object store`);
      expect(encode(completed).length).toBeLessThan(10_000);
      // The second request carried the whole result; the window keeps the preview and the reference.
      expect(fake.requests[1]!.messages.at(-1)).toEqual({ role: "tool", tool_call_id: expect.any(String), content: `${"x".repeat(SIZE - 3)}end` });
      const window = await stack.client.contextWindow(runId);
      expect(window.at(-2)).toMatchObject({ role: "tool", ref: completed.data.resultRef });

      expect((await objectsOf(stack)).map((o) => o.name)).toEqual([`${runId}/${completed.data.callId}`]);

      // A fork owns a copy of the result (removing the original takes nothing from it) and sends it whole...
      const fork = await stack.client.fork(runId, completed.seq);
      expect(await stack.client.waitForRun(fork.runId, { timeoutMs: 30_000 })).toMatchObject({ status: "Completed", output: `got ${SIZE} chars ending in end` });
      const forked = (await stack.client.events(fork.runId)).find((e) => e.type === "ToolCallCompleted") as typeof completed;
      expect(forked.data.resultRef).toMatchObject({ object: `${fork.runId}/${completed.data.callId}`, bytes: SIZE, digest: completed.data.resultRef!.digest });
      // ...unless the fork replaces it: then the model gets the replacement, not the stored result.
      const replaced = await stack.client.fork(runId, completed.seq, { message: "short" });
      expect(await stack.client.waitForRun(replaced.runId, { timeoutMs: 30_000 })).toMatchObject({ status: "Completed", output: "got 5 chars ending in ort" });

      // gc --archive keeps the events and, beside them, the large results whole.
      await new Promise((r) => setTimeout(r, 1100));
      const dir = mkdtempSync(join(tmpdir(), "sc-archive-"));
      const gc = await cli(["gc", "--older-than", "1s", "--archive", dir, "-o", "json"], { NATS_URL: process.env.NATS_URL ?? "", SC_PREFIX: stack.prefix });
      expect(gc.code).toBe(0);
      const removed = (JSON.parse(gc.stdout) as { removed: { runId: string }[] }).removed;
      expect(removed.map((r) => r.runId).sort()).toEqual([runId, fork.runId, replaced.runId].sort());
      expect(await objectsOf(stack)).toEqual([]);
      expect(readFileSync(join(dir, `${runId}.${completed.data.callId}.result`), "utf8")).toBe(`${"x".repeat(SIZE - 3)}end`);
      expect(readFileSync(join(dir, `${runId}.jsonl`), "utf8")).toContain('"resultRef"');
    } finally {
      await fake.close();
    }
  });

  it("fails a call whose result event cannot fit in a NATS message at once, saying why, instead of retrying it", async () => {
    // A model answer of 1.5 MB: the LLMResponded event is over max_payload (1 MB), and no retry can change that.
    const fake = await startFakeOpenAI(() => ({ content: "y".repeat(1_500_000) }));
    try {
      await using stack = await startStack();
      await stack.apply(config(fake.url));
      const { runId } = await stack.client.startRun({ task: "read" });
      const done = await stack.client.waitForRun(runId, { timeoutMs: 20_000 });
      expect(done.status).toBe("Failed");
      expect(done.error).toContain("larger than NATS accepts in one message (max_payload)");
      expect(fake.requests).toHaveLength(1);
    } finally {
      await fake.close();
    }
  });
});
