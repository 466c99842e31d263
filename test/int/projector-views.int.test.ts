import { jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { encodeView, evolve, initialState, type RecordedEvent, type RunEvent } from "@smallchain/shared";
import { startProjector } from "@smallchain/projector";
import { appendRun, runStart } from "../support/events.js";
import { eventually } from "../support/processes.js";
import { startStack } from "../support/stack.js";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
function runEvents(runId: string): RunEvent[] {
  return [...runStart(runId), { id: `${runId}:llm1`, type: "LLMRequested", v: 1, runId, at: 3, data: { step: 1, llm: "m", messageCount: 2 } }];
}

describe("the projector's view writes", () => {
  it("stores a busy run's view once per delay, and acks its events only when the view holding them is stored", async () => {
    await using stack = await startStack([]);
    const jsm = await jetstreamManager(stack.nc);
    const projector = await startProjector({ nc: stack.nc, names: stack.names, log, viewDelayMs: 1_500 });
    try {
      await appendRun(stack.client.store, runEvents("rbusy"));
      const pending = async () => (await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.projector)).num_ack_pending;
      // Folded, not stored yet: nothing is acked, so a crash now would bring all three back.
      await eventually(async () => (await pending()) === 3, 1_000, "three events folded and held");
      expect(await stack.client.getRun("rbusy")).toBeUndefined();
      // One write, with all three, then the acks.
      const view = await eventually(async () => stack.client.getRun("rbusy"), 5_000, "the view");
      expect(view.lastSeq).toBe(3);
      expect(view.status).toBe("Running");
      expect((await stack.client.buckets.runs.get("rbusy"))?.revision).toBeGreaterThan(0);
      await eventually(async () => (await pending()) === 0, 2_000, "the events acked");
    } finally {
      await projector.stop();
    }
  });

  it("stores every view it folded when it stops, without waiting for the delay", async () => {
    await using stack = await startStack([]);
    const projector = await startProjector({ nc: stack.nc, names: stack.names, log, viewDelayMs: 60_000 });
    await appendRun(stack.client.store, runEvents("rstop"));
    const jsm = await jetstreamManager(stack.nc);
    await eventually(
      async () => (await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.projector)).num_ack_pending === 3,
      2_000,
      "three events folded",
    );
    await projector.stop();
    expect((await stack.client.getRun("rstop"))?.lastSeq).toBe(3);
    const info = await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.projector);
    expect(info.num_ack_pending + info.num_pending).toBe(0);
  });

  it("never stores a view over one stored after the one it folded from (replicas racing on a run)", async () => {
    await using stack = await startStack([]);
    const events = runEvents("rrace");
    await appendRun(stack.client.store, events);
    // Another replica folded all three and stored its view first; ours gets the run's events after that.
    let state = initialState("rrace");
    events.forEach((e, i) => (state = evolve(state, { ...e, seq: i + 1 } as RecordedEvent)));
    await stack.client.buckets.runs.put("rrace", encodeView({ ...state, name: "stored-elsewhere" }));
    const projector = await startProjector({ nc: stack.nc, names: stack.names, log, viewDelayMs: 20 });
    try {
      const jsm = await jetstreamManager(stack.nc);
      await eventually(
        async () => {
          const info = await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.projector);
          return info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq >= 3;
        },
        10_000,
        "every event handled",
      );
      // Our fold of the first event expected no view; finding one, it folded again from it and wrote nothing.
      const view = await stack.client.getRun("rrace");
      expect(view?.name).toBe("stored-elsewhere");
      expect(view?.lastSeq).toBe(3);
      // A new event is folded over the stored view and written over it.
      await stack.client.store.append({ id: "rrace:failed", type: "RunFailed", v: 1, runId: "rrace", at: 4, data: { reason: "stop" } });
      const failed = await eventually(async () => {
        const v = await stack.client.getRun("rrace");
        return v?.status === "Failed" ? v : undefined;
      }, 5_000, "the view to show the run failed");
      expect(failed.name).toBe("stored-elsewhere");
      expect(failed.lastSeq).toBe(4);
    } finally {
      await projector.stop();
    }
  });

  it("stores its view over one stored elsewhere meanwhile that holds fewer events, without any event coming back", async () => {
    await using stack = await startStack([]);
    const events = runEvents("rbehind");
    await appendRun(stack.client.store, events);
    // Another replica stored a view of the first event only; ours folds all three from no view at all.
    const first = evolve(initialState("rbehind"), { ...events[0]!, seq: 1 } as RecordedEvent);
    await stack.client.buckets.runs.put("rbehind", encodeView({ ...first, name: "stored-elsewhere" }));
    const projector = await startProjector({ nc: stack.nc, names: stack.names, log, viewDelayMs: 20 });
    try {
      const view = await eventually(async () => {
        const v = await stack.client.getRun("rbehind");
        return v?.lastSeq === 3 ? v : undefined;
      }, 10_000, "our view stored over the one behind it");
      expect(view.name).toBeUndefined();
      const jsm = await jetstreamManager(stack.nc);
      const info = await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.projector);
      expect(info.num_redelivered).toBe(0);
    } finally {
      await projector.stop();
    }
  });
});
