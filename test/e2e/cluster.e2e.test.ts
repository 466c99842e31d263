import { mkdirSync, mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { Client, ProvisionError, names, parseConfig, provision, type RecordedEvent } from "@smallchain/shared";
import { startCluster, type Cluster } from "../support/cluster.js";
import { natsUrl, uniquePrefix } from "../support/nats.js";
import { eventually, spawnService, started, type ServiceName, type ServiceProcess } from "../support/processes.js";

const RUNS = 50;

/** Each run: a command tool with a side effect, a delegation whose child calls it too, then an answer. */
function config(runs: number): string {
  return `
llms:
  - name: lead-llm
    provider: mock
    replies:
      - tool_calls: [ { name: record, arguments: {} }, { name: helper, arguments: { message: "record too" } } ]
      - content: "done"
  - name: helper-llm
    provider: mock
    replies:
      - tool_calls: [ { name: record, arguments: {} } ]
      - content: "{{last_tool_result}}"
agents:
  - { name: lead, llm: lead-llm, tools: [ record, { agent: helper } ] }
  - { name: helper, llm: helper-llm, tools: [ record ] }
tools:
  - name: record
    parameters: { type: object }
    executor:
      command:
        runtime: bash
        env: [ EFFECTS_DIR ]
        # Exactly once through the idempotency key: a repeated call (after a crash) finds its mark and does nothing.
        script: |
          k="$SMALLCHAIN_IDEMPOTENCY_KEY"
          echo "$k" >> "$EFFECTS_DIR/attempts"
          if mkdir "$EFFECTS_DIR/done/$k" 2>/dev/null; then echo "$k" >> "$EFFECTS_DIR/effects"; fi
          echo recorded
tasks:
  - { name: t, user_message: go, agent: lead }
runs:
${Array.from({ length: runs }, (_, i) => `  - { name: c-${i}, task: t }`).join("\n")}
`;
}

describe("a 3-node JetStream cluster with replicas: 3", () => {
  let cluster: Cluster | undefined;
  let nc: NatsConnection | undefined;
  const procs: ServiceProcess[] = [];

  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));
    await nc?.close();
    await cluster?.stop();
    cluster = undefined;
    nc = undefined;
  });

  const survive = async (pickVictim: (client: Client) => Promise<string>) => {
    cluster = await startCluster(3);
    const prefix = uniquePrefix("cl");
    const n = names(prefix);
    const effects = mkdtempSync(join(tmpdir(), "sc-cluster-effects-"));
    mkdirSync(join(effects, "done"));
    const env = {
      NATS_URL: cluster.urls,
      SC_PREFIX: prefix,
      SC_REPLICAS: "3",
      EFFECTS_DIR: effects,
      SC_LLM_ACK_WAIT_MS: "5000",
      SC_TOOL_ACK_WAIT_MS: "5000",
    };
    nc = await connect({ servers: cluster.urls.split(","), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const client = await Client.connect(nc, n, { replicas: 3 });
    // SC_SCHEDULER_PROJECTS=1 in the test's environment (passed on to the services): the schedulers project, no projector.
    const projecting = process.env.SC_SCHEDULER_PROJECTS === "1";
    const services: ServiceName[] = ["scheduler", "scheduler", ...(projecting ? [] : ["projector" as const]), "llm-worker", "llm-worker", "tool-worker", "tool-worker"];
    const ps = services.map((s) => spawnService(s, env));
    procs.push(...ps);
    await Promise.all(ps.map((p) => started(p)));
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(n.eventsStream)).config.num_replicas).toBe(3);
    expect((await jsm.streams.info(`KV_${n.runsBucket}`)).config.num_replicas).toBe(3);
    // A process started without SC_REPLICAS (say, a CLI) provisions with 1: it must not take copies away.
    await provision(nc, n, { replicas: 1 });
    expect((await jsm.streams.info(n.eventsStream)).config.num_replicas).toBe(3);
    expect((await jsm.streams.info(`KV_${n.runsBucket}`)).config.num_replicas).toBe(3);

    const t0 = Date.now();
    const applied = await client.apply(parseConfig(config(RUNS), "cluster.yaml"));
    const done = () => Promise.all(applied.runs.map((r) => client.getRun(r.runId))).then((vs) => vs.filter((v) => v?.status === "Completed").length);
    await eventually(async () => (await done()) >= 5, 30_000, "the first runs to complete");

    const victim = await pickVictim(client);
    // Whether the node killed leads the event stream: then JetStream must elect a new leader before appends go on.
    const eventsLeader = (await jsm.streams.info(n.eventsStream)).cluster?.leader ?? "";
    const killedAt = Date.now();
    await cluster.kill(victim);
    await new Promise((r) => setTimeout(r, 2000));
    await cluster.start(victim);
    const restartedAt = Date.now();

    const views = await Promise.all(
      applied.runs.map((r) =>
        client.waitForRun(r.runId, { timeoutMs: 60_000 }).catch(async (err: Error) => {
          // Say where a stuck run stands: its stream, and what the view holds.
          const events = await client.events(r.runId);
          const view = await client.getRun(r.runId);
          // The workers' consumers of the COMMANDS stream and of the decisions (where most commands come from).
          const consumers = await Promise.all(
            [
              [n.commandsStream, n.consumers.llmWorker],
              [n.commandsStream, n.consumers.toolWorker],
              [n.eventsStream, n.consumers.llmDecisions],
              [n.eventsStream, n.consumers.toolDecisions],
            ].map(async ([stream, c]) => {
              const i = await jsm.consumers.info(stream!, c!);
              return `${c}: pending ${i.num_pending} ack_pending ${i.num_ack_pending} redelivered ${i.num_redelivered} waiting ${i.num_waiting} delivered ${i.delivered.stream_seq} ack floor ${i.ack_floor.stream_seq}`;
            }),
          );
          const logs = procs.map((p) => `--- ${p.name}\n${p.output().split("\n").filter((l) => l.includes(r.runId) || /"level":(40|50)/.test(l)).slice(-25).join("\n")}`);
          throw new Error(
            `${err.message}\nevents: ${events.map((e) => `${e.seq}:${e.type}`).join(" ")}\nview lastSeq ${view?.lastSeq} turn ${JSON.stringify(view?.turn)}\n${consumers.join("\n")}\n${logs.join("\n")}`,
          );
        }),
      ),
    );
    const finishedAt = Date.now();
    expect(views.map((v) => v.status)).toEqual(Array(RUNS).fill("Completed"));

    // No event twice in any stream, parents' and children's alike. A read's JetStream request may still time out
    // while the restarted node catches up, or its consumer stall (a RetryableError, as the services get it, and they
    // read again): it is asked again (up to 3 times), never skipped.
    const eventsOf = async (runId: string): Promise<RecordedEvent[]> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await client.events(runId);
        } catch (err) {
          if (attempt >= 3 || !["TimeoutError", "RetryableError"].includes((err as Error).name)) throw err;
        }
      }
    };
    const all: RecordedEvent[] = [];
    for (const v of views) {
      const events = await eventsOf(v.runId);
      const child = events.flatMap((e) => (e.type === "ChildRunRequested" ? [e.data.childRunId] : []));
      all.push(...events, ...(await Promise.all(child.map((c) => eventsOf(c)))).flat());
    }
    const perRun = new Map<string, string[]>();
    for (const e of all) perRun.set(e.runId, [...(perRun.get(e.runId) ?? []), e.id]);
    const duplicates = [...perRun.values()].reduce((d, ids) => d + ids.length - new Set(ids).size, 0);
    expect(duplicates).toBe(0);
    expect(perRun.size).toBe(RUNS * 2);

    // Every call of the side-effecting tool had its effect exactly once.
    const recordCalls = all.filter((e) => e.type === "ToolCallRequested" && e.data.tool === "record").length;
    const lines = readFileSync(join(effects, "effects"), "utf8").trim().split("\n");
    expect(recordCalls).toBe(RUNS * 2);
    expect(lines).toHaveLength(RUNS * 2);
    expect(new Set(lines).size).toBe(lines.length);
    const attempts = existsSync(join(effects, "attempts")) ? readFileSync(join(effects, "attempts"), "utf8").trim().split("\n").length : 0;

    // The restarted node caught up: it is a current replica of the event stream again.
    await eventually(
      async () => {
        const info = await jsm.streams.info(n.eventsStream);
        const peers = [info.cluster?.leader, ...(info.cluster?.replicas ?? []).filter((r) => r.current).map((r) => r.name)];
        return peers.includes(victim);
      },
      30_000,
      `${victim} to be a current replica again`,
    );

    // Time to recover: the longest pause in the cluster's event flow after the kill.
    const times = all.map((e) => e.at).filter((at) => at >= killedAt).sort((a, b) => a - b);
    const pause = times.reduce((max, at, i) => (i === 0 ? at - killedAt : Math.max(max, at - times[i - 1]!)), 0);
    const figures = { victim, victimLedEvents: victim === eventsLeader, runs: RUNS, childRuns: RUNS, events: all.length, toolEffects: lines.length, toolAttempts: attempts, duplicates, killToRestartMs: restartedAt - killedAt, longestPauseMs: pause, wallMs: finishedAt - t0 };
    process.stdout.write(`cluster figures: ${JSON.stringify(figures)}\n`);
    return figures;
  };

  it("completes 50 runs with delegations exactly once when a node is killed -9 mid-flight and restarted", async () => {
    const figures = await survive(async () => "n3");
    expect(figures.duplicates).toBe(0);
  }, 240_000);

  it("completes them when the node killed is the event stream's leader", async () => {
    let leader = "";
    const figures = await survive(async (client) => {
      const info = await (await jetstreamManager(client.nc)).streams.info(client.names.eventsStream);
      leader = info.cluster?.leader ?? "";
      expect(leader).toMatch(/^n[123]$/);
      return leader;
    });
    expect(figures.victim).toBe(leader);
  }, 240_000);
});

describe("replicas on a single server", () => {
  it("refuses replicas: 3 with an error that says what the server can hold and which setting to change", async () => {
    const conn = await connect({ servers: natsUrl() });
    try {
      const err = await provision(conn, names(uniquePrefix("rp")), { replicas: 3 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProvisionError);
      expect((err as Error).message).toMatch(/cannot provision stream [A-Z0-9]+_EVENTS with 3 replica\(s\): .*SC_REPLICAS=3: a single NATS server keeps 1 copy/);
    } finally {
      await conn.close();
    }
  });
});
