import { afterAll, describe, expect, it } from "vitest";
import { spawnService, started, type ServiceProcess } from "../support/processes.js";
import { adderConfig } from "../support/configs.js";
import { startStack, type ServiceName, type Stack } from "../support/stack.js";

/** The `msg` lines a worker logged, parsed (pino writes one JSON object per line). */
function logged(p: ServiceProcess, msg: string): Record<string, unknown>[] {
  return p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

/** Three LLM steps per run: two parallel adds, one more, then the answer (6). */
const REPLIES = [
  "{ tool_calls: [ { name: add, arguments: { a: 1, b: 1 } }, { name: add, arguments: { a: 2, b: 2 } } ] }",
  "{ tool_calls: [ { name: add, arguments: { a: 3, b: 3 } } ] }",
  '{ content: "{{last_tool_result}}" }',
];

describe("horizontal scaling", () => {
  let stack: Stack;
  const procs: ServiceProcess[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    await stack?.[Symbol.asyncDispose]();
  });

  it("spreads commands over three llm-workers and three tool-workers, each handled once, with two schedulers and two projectors deciding and projecting", async () => {
    stack = await startStack([]);
    const env = { SC_PREFIX: stack.prefix, LOG_LEVEL: "debug" };
    const names: ServiceName[] = ["scheduler", "scheduler", "projector", "projector", ...Array<ServiceName>(3).fill("llm-worker"), ...Array<ServiceName>(3).fill("tool-worker")];
    procs.push(...names.map((n) => spawnService(n, env)));
    await Promise.all(procs.map((p) => started(p)));

    const runs = 40;
    const applied = await stack.apply(adderConfig(REPLIES, runs, "scale"));
    const views = await Promise.all(applied.runs.map((r) => stack.client.waitForRun(r.runId, { timeoutMs: 30_000 })));
    expect(views.every((v) => v.status === "Completed" && v.output === "6")).toBe(true);

    const llmWorkers = procs.filter((p) => p.name === "llm-worker");
    const toolWorkers = procs.filter((p) => p.name === "tool-worker");
    const llmCalls = llmWorkers.map((p) => logged(p, "llm responded").map((l) => `${l.runId}/${l.step}`));
    const toolCalls = toolWorkers.map((p) => logged(p, "tool call finished").map((l) => `${l.runId}/${l.callId}`));
    // Every worker took a share...
    expect(llmCalls.map((c) => c.length).every((n) => n > 0)).toBe(true);
    expect(toolCalls.map((c) => c.length).every((n) => n > 0)).toBe(true);
    // ...and each command was handled exactly once, by one of them.
    const allLlm = llmCalls.flat();
    const allTools = toolCalls.flat();
    expect(allLlm).toHaveLength(runs * 3);
    expect(new Set(allLlm).size).toBe(allLlm.length);
    expect(allTools).toHaveLength(runs * 3);
    expect(new Set(allTools).size).toBe(allTools.length);
    // Two schedulers (optimistic concurrency on the run's last sequence) took no decision twice.
    for (const r of applied.runs) {
      const events = await stack.client.events(r.runId);
      expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
      expect(events.filter((e) => e.type === "LLMRequested").map((e) => e.type === "LLMRequested" && e.data.step)).toEqual([1, 2, 3]);
    }
    const schedulers = procs.filter((p) => p.name === "scheduler");
    expect(schedulers.every((p) => p.child.exitCode === null)).toBe(true);
  });

  it("keeps every view whole with two schedulers that project and no projector: replicas racing on a run's view compare, none stores an older one", async () => {
    const own = await startStack([]);
    const env = { SC_PREFIX: own.prefix, SC_SCHEDULER_PROJECTS: "1" };
    const names: ServiceName[] = ["scheduler", "scheduler", "llm-worker", "llm-worker", "tool-worker", "tool-worker"];
    const mine = names.map((n) => spawnService(n, env));
    try {
      await Promise.all(mine.map((p) => started(p)));
      const runs = 40;
      const applied = await own.apply(adderConfig(REPLIES, runs, "views"));
      const views = await Promise.all(applied.runs.map((r) => own.client.waitForRun(r.runId, { timeoutMs: 30_000 })));
      expect(views.every((v) => v.status === "Completed" && v.output === "6")).toBe(true);
      // Each view holds its run's every event, and the index lists each run once.
      for (const r of applied.runs) {
        const events = await own.client.events(r.runId);
        expect((await own.client.getRun(r.runId))?.lastSeq).toBe(events.at(-1)!.seq);
      }
      const listed = (await own.client.listRuns()).runs.map((r) => r.runId);
      expect(listed.sort()).toEqual(applied.runs.map((r) => r.runId).sort());
      // The replicas did race on views (about 90 times in 40 runs here), and settled it by comparing.
      expect(mine.flatMap((p) => logged(p, "the run's view was stored elsewhere meanwhile, holding what we folded")).length).toBeGreaterThan(0);
      // Both schedulers handled events; nothing was left unacked.
      const { jetstreamManager } = await import("@nats-io/jetstream");
      const jsm = await jetstreamManager(own.nc);
      const info = await jsm.consumers.info(own.names.eventsStream, own.names.consumers.scheduler);
      expect(info.num_ack_pending + info.num_pending).toBe(0);
      expect(mine.filter((p) => p.name === "scheduler").every((p) => p.child.exitCode === null)).toBe(true);
    } finally {
      await Promise.all(mine.map((p) => p.kill()));
      await own[Symbol.asyncDispose]();
    }
  });
});
