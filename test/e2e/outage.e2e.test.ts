import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { Client, isTerminal, names, parseConfig, type RunState } from "@smallchain/shared";
import { checkStreams } from "../chaos/src/verify.js";
import { startPrivateNats, type PrivateNats } from "../support/nats-server.js";
import { eventually, spawnService, started, type ServiceProcess } from "../support/processes.js";
import { uniquePrefix } from "../support/nats.js";
import type { ServiceName } from "../support/stack.js";

const RUNS = 30;
const OUTAGE_MS = 10_000;

const CONFIG = `
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: add, arguments: { a: 1, b: 2 } }, { name: slow, arguments: {} } ]
      - tool_calls: [ { name: slow, arguments: {} } ]
      - content: "done: {{last_tool_result}}"
agents:
  - { name: patient, llm: mock, tools: [ add, slow ] }
tools:
  - { name: add, builtin: add }
  - name: slow
    parameters: { type: object }
    executor: { command: { runtime: bash, script: "sleep 1.5; echo slept" } }
tasks:
  - { name: wait, user_message: go, agent: patient }
`;

describe("a NATS outage", () => {
  let server: PrivateNats | undefined;
  let nc: NatsConnection | undefined;
  const procs: ServiceProcess[] = [];

  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));
    await nc?.close();
    await server?.dispose();
    nc = undefined;
    server = undefined;
  });

  it("services reconnect by themselves after the server is down for 10 s, and every run completes", async () => {
    server = await startPrivateNats();
    const prefix = uniquePrefix();
    nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const client = await Client.connect(nc, names(prefix));
    await client.apply(parseConfig(CONFIG, "outage.yaml", await client.knownNames()));
    const env = { NATS_URL: server.url, SC_PREFIX: prefix, SC_TOOL_ACK_WAIT_MS: "3000", SC_LLM_ACK_WAIT_MS: "3000" };
    const services: ServiceName[] = ["scheduler", "projector", "llm-worker", "tool-worker"];
    procs.push(...services.map((s) => spawnService(s, env)));
    await Promise.all(procs.map((p) => started(p)));

    const runIds: string[] = [];
    for (let i = 0; i < RUNS; i++) runIds.push((await client.startRun({ task: "wait", runId: `out${i}` })).runId);
    const views = async () => Promise.all(runIds.map((id) => client.getRun(id)));
    // Every run has started and none can have finished (each sleeps 3 s in its tools) when the server dies.
    await eventually(async () => (await views()).every((v) => v?.status === "Running"), 10_000, "every run to be running");

    await server.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    expect(procs.every((p) => p.child.exitCode === null)).toBe(true);
    await server.start();
    const restarted = Date.now();

    const ended = await eventually(
      async () => {
        // The test's own connection reconnects too; a request lost meanwhile just asks again.
        const now = await views().catch(() => []);
        return now.length === RUNS && now.every((v) => v !== undefined && isTerminal(v)) ? (now as RunState[]) : undefined;
      },
      25_000,
      "every run to end after the outage",
    ).catch(async (err: unknown) => {
      // Where the runs that did not end stopped: their events, in ms from the restart.
      const stuck = (await views().catch(() => [])).filter((v) => !v || !isTerminal(v)).slice(0, 3);
      const timelines = await Promise.all(
        stuck.map(async (v) => {
          const events = v ? await client.events(v.runId).catch(() => []) : [];
          return `${v?.runId}: ${events.map((e) => `#${e.seq} ${e.type}${e.result ? "(res)" : ""} ${e.at - restarted}`).join(", ")}`;
        }),
      );
      throw new Error(`${(err as Error).message}\n${timelines.join("\n")}\n${procs.map((p) => `--- ${p.name}\n${p.output().slice(-3000)}`).join("\n")}`);
    });

    expect(ended.map((v: RunState) => [v.runId, v.status, v.output]).sort()).toEqual(
      runIds.map((id) => [id, "Completed", "done: slept"]).sort(),
    );
    // Nothing recorded twice or lost: the streams fold into exactly the views in KV.
    const check = await checkStreams(client, ended);
    expect({ invalid: check.invalidEvents, duplicates: check.duplicates, views: check.viewMismatches }).toEqual({
      invalid: [],
      duplicates: [],
      views: [],
    });
    for (const events of check.streams.values()) expect(events.filter((e) => e.type === "ToolCallCompleted")).toHaveLength(3);
    // Nobody was restarted: the same processes rode out the outage.
    expect(procs.every((p) => p.child.exitCode === null && p.child.signalCode === null)).toBe(true);
  }, 60_000);
});
