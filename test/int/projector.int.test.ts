import { jetstream, type JsMsg } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { encode, provision, runRequested, type RecordedEvent } from "@smallchain/shared";
import { eventually } from "../support/processes.js";
import { adderConfig } from "../support/configs.js";
import { runStart } from "../support/events.js";
import { startStack, viewsRebuilt } from "../support/stack.js";

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
    const before = await Promise.all(runs.map((r) => stack.client.getRun(r.runId)));
    // Throw the views away and let a new projector with a fresh consumer fold the streams again.
    await first.stop();
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(stack.nc);
    await jsm.consumers.delete(stack.names.eventsStream, stack.names.consumers.projector);
    expect(await viewsRebuilt(stack, runs.map((r) => r.runId))).toEqual(before);
  });

  it("writes an event's view when it comes back after its first writes failed", async () => {
    await using stack = await startStack(["projector"]);
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(stack.nc);
    const [requested, started] = runStart("rfail");
    await stack.client.store.append(requested, 0);
    await eventually(async () => (await stack.client.getRun("rfail"))?.lastSeq === 1, 10_000, "the run's view");
    // The runs bucket vanishes: the projector folds RunStarted but cannot store the view.
    await jsm.streams.delete(`KV_${stack.names.runsBucket}`);
    await stack.client.store.append(started);
    await new Promise((r) => setTimeout(r, 500));
    await provision(stack.nc, stack.names);
    // Redelivered after the ack wait, the event must be folded and written again, not taken as done.
    const view = await eventually(async () => {
      const v = await stack.client.getRun("rfail");
      return v?.status === "Running" ? v : undefined;
    }, 15_000, "the view to show RunStarted");
    expect(view).toMatchObject({ messageCount: 2, eventCount: 2, lastSeq: (await stack.client.events("rfail")).at(-1)!.seq });
  });
  it("folds an event a killed projector held, when the run's next event arrives before it comes back", async () => {
    // The chaos run's incident: a projector is killed holding a run's LLMRequested and LLMResponded unacked. The
    // next incarnation gets LLMRequested back first, then the run's next event (new, the scheduler's reaction
    // to LLMResponded), then LLMResponded: consumer sequences follow on without a hole throughout.
    await using stack = await startStack([]);
    const js = jetstream(stack.nc);
    const first = await stack.start("projector");
    const store = stack.client.store;
    const runId = "rheld";
    const [requested, started] = runStart(runId);
    await store.append(requested, 0);
    await store.append(started);
    await eventually(async () => (await stack.client.getRun(runId))?.status === "Running", 10_000, "the view to show RunStarted");
    await first.stop();
    await store.append({ id: `${runId}:llm1`, type: "LLMRequested", v: 1, runId, at: 3, data: { step: 1, llm: "m", messageCount: 2 } });
    await store.append({
      id: `${runId}:llm1:done`,
      type: "LLMResponded",
      v: 1,
      runId,
      at: 4,
      data: { step: 1, content: "hi there", toolCalls: [], usage: { promptTokens: 3, completionTokens: 2, cachedTokens: 0 }, model: "m", finishReason: "stop", durationMs: 1 },
    });
    // The killed incarnation: it pulled both and never acked. Their ack waits run out at different times (here
    // made short and deterministic with a delayed nak): LLMRequested comes back at once, LLMResponded in 3 s.
    const consumer = await js.consumers.get(stack.names.eventsStream, stack.names.consumers.projector);
    const held = await consumer.fetch({ max_messages: 2, expires: 2_000 });
    const taken: JsMsg[] = [];
    for await (const m of held) {
      taken.push(m);
      if (taken.length === 2) break;
    }
    expect(taken.map((m) => m.seq)).toHaveLength(2);
    taken[1]!.nak(3_000);
    taken[0]!.nak();
    await stack.start("projector");
    await eventually(async () => ((await stack.client.getRun(runId))?.lastSeq ?? 0) >= taken[0]!.seq, 10_000, "the view to fold LLMRequested again");
    await store.append({ id: `${runId}:completed`, type: "RunCompleted", v: 1, runId, at: 5, data: { output: "hi there" } });
    await eventually(async () => (await stack.client.getRun(runId))?.status === "Completed", 10_000, "the view to show RunCompleted");
    // Past the redelivery of LLMResponded: whatever it did is done.
    await new Promise((r) => setTimeout(r, 3_500));
    const events: RecordedEvent[] = await store.readRun(runId);
    const view = await stack.client.getRun(runId);
    expect(view?.eventCount).toBe(events.length);
    expect(view?.messageCount).toBe(3);
    expect(view?.usage.totalTokens).toBe(5);
  });
});
