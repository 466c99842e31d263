import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createMetrics, type RunEvent } from "@smallchain/shared";
import { startProjectorThread } from "@smallchain/projector";
import { appendRun, runStart } from "../support/events.js";
import { eventually } from "../support/processes.js";
import { natsUrl } from "../support/nats.js";
import { startStack } from "../support/stack.js";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
function runEvents(runId: string): RunEvent[] {
  return [...runStart(runId), { id: `${runId}:completed`, type: "RunCompleted", v: 1, runId, at: 3, data: { output: "hi" } }];
}


describe("the projector on a worker thread (smallchain dev)", () => {
  it("folds runs into views from its own thread, relays its metrics, and stores what it folded when stopped", async () => {
    await using stack = await startStack([]);
    const metrics = createMetrics({ defaultMetrics: false });
    const projector = await startProjectorThread({ servers: [natsUrl()], prefix: stack.prefix, logLevel: "silent", log, metrics });
    try {
      await appendRun(stack.client.store, runEvents("rthread"));
      const view = await eventually(async () => stack.client.getRun("rthread"), 10_000, "the view");
      expect(view).toMatchObject({ status: "Completed", output: "hi", lastSeq: 3 });
      // The thread's counts reach this thread's registry (sent at most every 500 ms).
      const events = async () => (await metrics.registry.getSingleMetric("smallchain_events_handled_total")?.get())?.values ?? [];
      await eventually(async () => (await events()).filter((v) => v.labels.service === "projector").reduce((a, v) => a + v.value, 0) === 3, 5_000, "3 events counted");
    } finally {
      await projector.stop();
    }
  });

  it("starts the thread again when it dies, and the new one folds what the old one left", async () => {
    await using stack = await startStack([]);
    const projector = await startProjectorThread({ servers: [natsUrl()], prefix: stack.prefix, logLevel: "silent", log });
    try {
      await appendRun(stack.client.store, runEvents("rbefore"));
      await eventually(async () => stack.client.getRun("rbefore"), 10_000, "the first view");
      // Kill the thread from the inside: the main thread sees it exit and starts another.
      await projector.kill();
      await appendRun(stack.client.store, runEvents("rafter"));
      const view = await eventually(async () => stack.client.getRun("rafter"), 15_000, "the view after the restart");
      expect(view.status).toBe("Completed");
    } finally {
      await projector.stop();
    }
  });

  it("fails to start with the reason when NATS cannot be reached", async () => {
    await expect(startProjectorThread({ servers: ["nats://127.0.0.1:1"], prefix: "tnowhere", logLevel: "silent", log })).rejects.toThrow(/projector did not start: cannot connect to NATS/);
  });
});
