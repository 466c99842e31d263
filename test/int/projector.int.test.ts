import { jetstream } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { encode, provision, runRequested, type RunEvent } from "@smallchain/shared";
import { eventually } from "../support/processes.js";
import { adderConfig } from "../support/configs.js";
import { startStack } from "../support/stack.js";

describe("the projector", () => {
  it("keeps the newest view when an old event of the run comes again after newer ones", async () => {
    await using stack = await startStack([]);
    const js = jetstream(stack.nc);
    const first = runRequested("rrepeat", 1, { agent: "a", task: "t", input: "hi" });
    await stack.client.store.append(first, 0);
    await stack.client.store.append({ id: "rrepeat:failed", type: "RunFailed", v: 1, runId: "rrepeat", at: 2, data: { reason: "stop" } });
    // The first event again under another msg id, as a redelivery would bring it: the last of the run's queue.
    await js.publish(stack.names.runSubject("rrepeat"), encode(first), { msgID: "rrepeat:again" });
    // Started now, the projector receives all three at once and queues them behind each other.
    await stack.start("projector");
    const view = await eventually(async () => {
      const v = await stack.client.getRun("rrepeat");
      return v?.status === "Failed" ? v : undefined;
    }, 10_000, "the view to show the run failed");
    expect(view.error).toBe("stop");
  });

  it("rebuilds exactly the views in KV when started afresh over the same streams", async () => {
    await using stack = await startStack(["scheduler", "llm-worker", "tool-worker"]);
    const first = await stack.start("projector");
    const applied = await stack.apply(
      adderConfig(['{ tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ] }', '{ content: "{{last_tool_result}}" }'], 2),
    );
    const runs = applied.runs;
    expect(runs).toHaveLength(2);
    await Promise.all(runs.map((r) => stack.client.waitForRun(r.runId)));
    const before = await Promise.all(runs.map(async (r) => [await stack.client.getRun(r.runId), await stack.client.contextWindow(r.runId)]));
    // Throw the views away and let a new projector with a fresh consumer fold the streams again.
    await first.stop();
    for (const r of runs) await stack.client.buckets.runs.delete(r.runId);
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(stack.nc);
    await jsm.consumers.delete(stack.names.eventsStream, stack.names.consumers.projector);
    await stack.start("projector");
    for (const [i, r] of runs.entries()) {
      const view = await eventually(async () => {
        const v = await stack.client.getRun(r.runId);
        return v?.status === "Completed" ? v : undefined;
      }, 10_000, "rebuilt view");
      expect(view).toEqual(before[i]![0]);
      expect(await stack.client.contextWindow(r.runId)).toEqual(before[i]![1]);
    }
  });

  it("writes an event's messages and view when it comes back after its first writes failed", async () => {
    await using stack = await startStack(["projector"]);
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(stack.nc);
    await stack.client.store.append(runRequested("rfail", 1, { agent: "a", task: "t", input: "hello" }), 0);
    await eventually(async () => (await stack.client.getRun("rfail"))?.lastSeq === 1, 10_000, "the run's view");
    // The context bucket vanishes: the projector folds RunStarted but cannot store its two messages.
    await jsm.streams.delete(`KV_${stack.names.contextBucket}`);
    const started: RunEvent = {
      id: "rfail:started",
      type: "RunStarted",
      v: 1,
      runId: "rfail",
      at: 2,
      data: { agent: { name: "a", systemPrompt: "be brief", maxSteps: 5, llm: { name: "m", provider: "openai", model: "m", api_key_env: "OPENAI_API_KEY", parameters: {}, timeout_ms: 1000 }, tools: [] } },
    };
    await stack.client.store.append(started);
    await new Promise((r) => setTimeout(r, 500));
    await provision(stack.nc, stack.names);
    // Redelivered after the ack wait, the event must be folded and written again, not taken as done.
    const view = await eventually(async () => {
      const v = await stack.client.getRun("rfail");
      return v?.status === "Running" ? v : undefined;
    }, 15_000, "the view to show RunStarted");
    expect(view.messageCount).toBe(2);
    expect(await stack.client.contextWindow("rfail")).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "hello" },
    ]);
  });
});
