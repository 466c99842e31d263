import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createMetrics, encode, names, startMetricsServer, type ToolCommand } from "@smallchain/shared";
import { startToolWorker } from "@smallchain/tool-worker";
import { adderConfig } from "../support/configs.js";
import { parseSamples, scrape, sampleValue } from "../support/metrics.js";
import { cleanupPrefix, natsUrl, uniquePrefix } from "../support/nats.js";
import { eventually } from "../support/processes.js";
import { startStack } from "../support/stack.js";

const quiet = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

function addCommand(callId: string): ToolCommand {
  return {
    id: `r1:tool:${callId}`,
    runId: "r1",
    callId,
    step: 1,
    tool: { kind: "builtin", name: "add", description: "adds", parameters: { type: "object" }, builtin: "add" },
    args: { a: 2, b: 3 },
  };
}

async function healthz(port: number): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: res.status, body: await res.json() };
}

describe("metrics and health of a service", () => {
  it("counts the commands a worker handles on /metrics, and /healthz turns 503 once its NATS connection closes", async () => {
    // given a tool worker serving metrics on a free port
    const prefix = uniquePrefix("m");
    const n = names(prefix);
    const nc = await connect({ servers: natsUrl() });
    const metrics = createMetrics();
    const server = await startMetricsServer({ metrics, service: "tool-worker", nc, port: 0, host: "127.0.0.1" });
    try {
      const worker = await startToolWorker({ nc, names: n, log: quiet, metrics });
      const subject = n.toolCommandSubject("builtin");

      // when it gets a good command and a malformed one
      const js = jetstream(nc);
      await js.publish(subject, encode(addCommand("c1")));
      await js.publish(subject, encode({ not: "a command" }));

      // then both are counted by outcome, with the good one's duration
      const samples = await eventually(async () => {
        const s = await scrape(server.port);
        const terminated = sampleValue(s, "smallchain_commands_handled_total", { service: "tool-worker", subject, outcome: "terminated" });
        return terminated === 1 && sampleValue(s, "smallchain_commands_handled_total", { outcome: "ok", subject }) === 1 && s;
      }, 10_000, "both commands counted");
      expect(sampleValue(samples, "smallchain_commands_handled_total", { subject, outcome: "failed" })).toBe(0);
      expect(sampleValue(samples, "smallchain_commands_handled_total", { subject, outcome: "retried" })).toBe(0);
      expect(sampleValue(samples, "smallchain_command_duration_seconds_count", { service: "tool-worker", subject })).toBe(1);
      expect(sampleValue(samples, "smallchain_command_duration_seconds_bucket", { subject, le: "+Inf" })).toBe(1);
      expect(sampleValue(samples, "smallchain_redeliveries_total", { service: "tool-worker" })).toBe(0);
      // Node's own process metrics come along.
      expect(sampleValue(samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
      expect(await healthz(server.port)).toEqual({ status: 200, body: { status: "ok", service: "tool-worker", nats: "connected" } });

      // when its connection to NATS is gone
      await worker.stop();
      await cleanupPrefix(nc, prefix);
      await nc.close();

      // then it reports itself unhealthy
      expect(await healthz(server.port)).toEqual({ status: 503, body: { status: "unavailable", service: "tool-worker", nats: "closed" } });
    } finally {
      await server.close();
      if (!nc.isClosed()) {
        await cleanupPrefix(nc, prefix);
        await nc.close();
      }
    }
  });

  it("counts a command delivered a second time as a redelivery", async () => {
    // given a command that a first taker handed back
    const prefix = uniquePrefix("m");
    const n = names(prefix);
    const nc = await connect({ servers: natsUrl() });
    try {
      await (await startToolWorker({ nc, names: n, log: quiet })).stop();
      const js = jetstream(nc);
      await js.publish(n.toolCommandSubject("builtin"), encode(addCommand("c2")));
      const first = await (await js.consumers.get(n.commandsStream, n.consumers.toolWorker)).next({ expires: 5_000 });
      expect(first?.info.deliveryCount).toBe(1);
      first!.nak();

      // when a worker with metrics takes it
      const metrics = createMetrics({ defaultMetrics: false });
      const worker = await startToolWorker({ nc, names: n, log: quiet, metrics });
      const subject = n.toolCommandSubject("builtin");
      const ok = async () => sampleValue(parseSamples(await metrics.registry.metrics()), "smallchain_commands_handled_total", { subject, outcome: "ok" });
      await eventually(async () => (await ok()) === 1, 10_000, "the command handled");
      await worker.stop();

      // then
      expect(sampleValue(parseSamples(await metrics.registry.metrics()), "smallchain_redeliveries_total", { service: "tool-worker" })).toBe(1);
    } finally {
      await cleanupPrefix(nc, prefix);
      await nc.close();
    }
  });

  it("follows a whole run: events, decisions, tokens per llm, commands and runs by status", async () => {
    // given every service sharing one process's metrics
    const metrics = createMetrics({ defaultMetrics: false });
    await using stack = await startStack(undefined, undefined, { metrics });
    const server = await startMetricsServer({ metrics, service: "dev", nc: stack.nc, port: 0, host: "127.0.0.1" });
    try {
      // when one run makes a tool call and answers
      const applied = await stack.apply(adderConfig(["{ tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ] }", "{ content: done }"], 1));
      await stack.client.waitForRun(applied.runs[0]!.runId, { timeoutMs: 15_000 });

      // then
      const s = await eventually(async () => {
        const samples = await scrape(server.port);
        return sampleValue(samples, "smallchain_runs", { status: "Completed" }) === 1 && samples;
      }, 10_000, "the projector to count the completed run");
      expect(sampleValue(s, "smallchain_runs", { status: "Requested" })).toBe(0);
      expect(sampleValue(s, "smallchain_runs", { status: "Running" })).toBe(0);
      expect(sampleValue(s, "smallchain_events_handled_total", { service: "projector", type: "RunCompleted" })).toBe(1);
      expect(sampleValue(s, "smallchain_events_handled_total", { service: "scheduler", type: "LLMResponded" })).toBe(2);
      expect(sampleValue(s, "smallchain_events_handled_total", { service: "scheduler", type: "ToolCallCompleted" })).toBe(1);
      expect(sampleValue(s, "smallchain_decisions_total")).toBeGreaterThanOrEqual(3);
      expect(sampleValue(s, "smallchain_decision_conflicts_total")).toBeGreaterThanOrEqual(0);
      expect(sampleValue(s, "smallchain_commands_handled_total", { service: "llm-worker", subject: stack.names.llmCommandSubject, outcome: "ok" })).toBe(2);
      expect(sampleValue(s, "smallchain_commands_handled_total", { service: "tool-worker", outcome: "ok" })).toBe(1);
      expect(sampleValue(s, "smallchain_llm_tokens_total", { llm: "mock", kind: "prompt" })).toBeGreaterThan(0);
      expect(sampleValue(s, "smallchain_llm_tokens_total", { llm: "mock", kind: "completion" })).toBeGreaterThan(0);
      expect(sampleValue(s, "smallchain_llm_tokens_total", { llm: "mock", kind: "cached" })).toBe(0);
      // The mock has no price: the cost counter is there, at zero.
      expect(sampleValue(s, "smallchain_llm_cost_usd_total", { llm: "mock" })).toBe(0);
    } finally {
      await server.close();
    }
  });
});
