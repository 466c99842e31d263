import { describe, expect, it } from "vitest";
import { createMetrics, relayMetrics, replayMetrics, type MetricCalls, type Metrics } from "./metrics.js";
import { metricsPortFromEnv } from "./server.js";

async function values(metrics: Metrics, name: string): Promise<Record<string, number>> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return Object.fromEntries(values.map((v) => [Object.values(v.labels).join(","), v.value]));
}

describe("metrics", () => {
  it("counts runs by status from transitions, so replicas that each saw part of a run's events add up", async () => {
    // given two projector processes
    const a = createMetrics({ defaultMetrics: false });
    const b = createMetrics({ defaultMetrics: false });
    // when a sees two runs begin and one start running, and b sees that one complete and the other fail
    a.service("projector").runTransition(undefined, "Requested");
    a.service("projector").runTransition(undefined, "Requested");
    a.service("projector").runTransition("Requested", "Running");
    b.service("projector").runTransition("Running", "Completed");
    b.service("projector").runTransition("Requested", "Failed");
    b.service("projector").runTransition("Failed", "Failed");
    // then
    expect(await values(a, "smallchain_runs")).toEqual({ Requested: 1, Running: 1 });
    expect(await values(b, "smallchain_runs")).toEqual({ Running: -1, Completed: 1, Requested: -1, Failed: 1 });
  });

  it("starts every outcome of a subject at 0 and observes durations except for terminated commands", async () => {
    const m = createMetrics({ defaultMetrics: false });
    const worker = m.service("tool-worker");
    worker.command("sc.cmd.tool.builtin", "ok", 0.002);
    worker.command("sc.cmd.tool.builtin", "retried", 0.5);
    worker.command("sc.cmd.tool.builtin", "terminated", 0);
    expect(await values(m, "smallchain_commands_handled_total")).toEqual({
      "tool-worker,sc.cmd.tool.builtin,ok": 1,
      "tool-worker,sc.cmd.tool.builtin,retried": 1,
      "tool-worker,sc.cmd.tool.builtin,failed": 0,
      "tool-worker,sc.cmd.tool.builtin,terminated": 1,
    });
    const histogram = await m.registry.getSingleMetric("smallchain_command_duration_seconds")!.get();
    const count = histogram.values.find((v) => (v as { metricName?: string }).metricName === "smallchain_command_duration_seconds_count");
    expect(count?.value).toBe(2);
    expect(m.service("tool-worker")).toBe(worker);
  });

  it("adds tokens by kind per llm, and cost only when it is known (present at 0 otherwise)", async () => {
    const m = createMetrics({ defaultMetrics: false });
    const llm = m.service("llm-worker");
    llm.llmUsage("gpt", { promptTokens: 100, completionTokens: 20, cachedTokens: 64 });
    llm.llmUsage("gpt", { promptTokens: 10, completionTokens: 2, cachedTokens: 0 }, 0.25);
    llm.llmUsage("local", { promptTokens: 5, completionTokens: 1, cachedTokens: 0 });
    expect(await values(m, "smallchain_llm_tokens_total")).toEqual({
      "gpt,prompt": 110,
      "gpt,completion": 22,
      "gpt,cached": 64,
      "local,prompt": 5,
      "local,completion": 1,
      "local,cached": 0,
    });
    expect(await values(m, "smallchain_llm_cost_usd_total")).toEqual({ gpt: 0.25, local: 0 });
  });

  it("keeps registries apart, so two installations in one process do not mix", async () => {
    const a = createMetrics({ defaultMetrics: false });
    const b = createMetrics({ defaultMetrics: false });
    a.service("scheduler").decision();
    a.service("scheduler").decisionConflict();
    expect(await values(a, "smallchain_decisions_total")).toEqual({ "": 1 });
    expect(await values(b, "smallchain_decisions_total")).toEqual({ "": 0 });
    expect(await values(b, "smallchain_decision_conflicts_total")).toEqual({ "": 0 });
  });
});

describe("metrics relayed from a worker thread", () => {
  it("adds up on the receiving registry as if the calls were made there, in one message per interval", async () => {
    // given a relay whose messages go through structured cloning, as between threads
    const direct = createMetrics({ defaultMetrics: false });
    const relayed = createMetrics({ defaultMetrics: false });
    const sent: MetricCalls[] = [];
    const relay = relayMetrics((batch) => sent.push(structuredClone(batch)), 60_000);
    // when the same calls are made on both
    for (const m of [direct.service("projector"), relay.service("projector")]) {
      m.event("RunStarted");
      m.event("RunStarted");
      m.runTransition(undefined, "Requested");
      m.runTransition("Requested", "Running");
      m.redelivered();
      m.command("sc.cmd.llm", "ok", 0.2);
    }
    // then nothing is sent before the interval (or a flush), and one message after it
    expect(sent).toHaveLength(0);
    relay.flush();
    expect(sent).toHaveLength(1);
    for (const batch of sent) replayMetrics(relayed, batch);
    for (const name of ["smallchain_events_handled_total", "smallchain_runs", "smallchain_redeliveries_total", "smallchain_commands_handled_total"]) {
      expect(await values(relayed, name), name).toEqual(await values(direct, name));
    }
  });
});

describe("SC_METRICS_PORT", () => {
  it("serves nothing when unset or empty, and a port (0 for any free one) when set", () => {
    expect(metricsPortFromEnv({})).toBeUndefined();
    expect(metricsPortFromEnv({ SC_METRICS_PORT: "" })).toBeUndefined();
    expect(metricsPortFromEnv({ SC_METRICS_PORT: "9464" })).toEqual({ port: 9464 });
    expect(metricsPortFromEnv({ SC_METRICS_PORT: "0", SC_METRICS_HOST: "127.0.0.1" })).toEqual({ port: 0, host: "127.0.0.1" });
  });

  it("refuses a value that is not a port, saying what it got", () => {
    for (const bad of ["abc", "-1", "65536", "94.64", "9464x"]) {
      expect(() => metricsPortFromEnv({ SC_METRICS_PORT: bad }), bad).toThrow(`SC_METRICS_PORT must be a port number from 0 to 65535 (0: any free port), got "${bad}"`);
    }
  });
});
