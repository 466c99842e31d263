import { readFile } from "node:fs/promises";
import {
  Client,
  connectNats,
  createLogger,
  evolve,
  initialState,
  initTracing,
  isTerminal,
  names,
  parseConfig,
  schedulerProjectsFromEnv,
  serveMetricsFromEnv,
  type RunState,
  type Service,
} from "@smallchain/shared";
import { startLlmWorker } from "@smallchain/llm-worker";
import { startProjectorThread } from "@smallchain/projector";
import { startScheduler } from "@smallchain/scheduler";
import { startToolWorker } from "@smallchain/tool-worker";
import { startGateway } from "@smallchain/gateway";
import { Exit, type GlobalOptions } from "../context.js";
import { eventLine } from "../format.js";
import { ensureLocalNats } from "../local-nats.js";
import { readEvents } from "./follow.js";

export type DevOptions = GlobalOptions & { apply?: string; exitWhenDone?: boolean; quiet?: boolean };

/** All four services in one process, for a laptop: optionally applies a file and follows what its runs do. */
export async function dev(opts: DevOptions): Promise<void> {
  const say = (line: string) => process.stderr.write(`smallchain dev: ${line}\n`);
  const url = opts.nats ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const nats = await ensureLocalNats(url, say);
  const nc = await connectNats("smallchain-dev", { servers: url.split(",") });
  const n = names(opts.prefix);
  const logLevel = process.env.LOG_LEVEL ?? "warn";
  const log = createLogger("dev", logLevel);
  const tracing = await initTracing("dev");
  // Only when SC_METRICS_PORT is set: one registry for the four services, told apart by their `service` label.
  const served = await serveMetricsFromEnv("dev", nc, log);
  const metrics = served?.metrics;
  // SC_SCHEDULER_PROJECTS=1: the scheduler folds the views itself, and no projector runs.
  const projects = schedulerProjectsFromEnv();
  const services: Service[] = [
    // On a thread of its own: nothing on a run's critical path waits for the views, and it takes the second core.
    ...(projects ? [] : [await startProjectorThread({ servers: url.split(","), prefix: n.prefix, logLevel, log: log.child({ service: "projector" }), metrics })]),
    await startScheduler({ nc, names: n, log: log.child({ service: "scheduler" }), metrics, projects }),
    await startLlmWorker({ nc, names: n, log: log.child({ service: "llm-worker" }), metrics }),
    await startToolWorker({ nc, names: n, log: log.child({ service: "tool-worker" }), metrics }),
  ];
  say(`${projects ? "scheduler (projecting the views)" : "scheduler, projector"}, llm-worker and tool-worker running on ${url} (prefix ${n.prefix}); Ctrl-C stops`);
  // The HTTP gateway only with a bearer token to guard it.
  if (process.env.SC_GATEWAY_TOKEN) {
    const gateway = await startGateway({
      nc,
      names: n,
      log: log.child({ service: "gateway" }),
      token: process.env.SC_GATEWAY_TOKEN,
      port: Number(process.env.SC_GATEWAY_PORT ?? 8080),
      host: process.env.SC_GATEWAY_HOST ?? "127.0.0.1",
    });
    services.push(gateway);
    say(`HTTP gateway on ${gateway.url} (Authorization: Bearer $SC_GATEWAY_TOKEN)`);
  }
  if (served) say(`metrics on http://127.0.0.1:${served.server.port}/metrics, health on /healthz`);
  const abort = new AbortController();
  const shutdown = async (code: number) => {
    abort.abort();
    await Promise.allSettled(services.map((s) => s.stop()));
    await nc.drain().catch(() => {});
    await served?.server.close();
    await tracing?.shutdown();
    await nats.stop();
    process.exit(code);
  };
  process.once("SIGINT", () => void shutdown(0));
  process.once("SIGTERM", () => void shutdown(0));

  if (!opts.apply) return;
  const client = await Client.connect(nc, n);
  const config = parseConfig(await readFile(opts.apply, "utf8"), opts.apply, await client.knownNames());
  const result = await client.apply(config, { file: opts.apply });
  say(`applied ${opts.apply}: ${result.changed.length} changed, ${result.unchanged.length} unchanged, ${result.runs.length} run(s)`);
  const roots = new Set(result.runs.map((r) => r.runId));
  const family = new Set(roots);
  // Each root run's state, folded from the events followed (as the projector folds its view): the outcome is
  // known as soon as the last root ends.
  const states = new Map<string, RunState>([...roots].map((id) => [id, initialState(id)]));
  const allDone = () => [...states.values()].every(isTerminal);
  if (result.runs.some((r) => !r.created)) {
    say("a run of this name exists already (runs start once per name): showing its events from the start");
  }
  for await (const event of readEvents(client, { follow: true, signal: abort.signal })) {
    if (event.type === "RunRequested" && event.data.parent && family.has(event.data.parent.runId)) family.add(event.runId);
    if (!family.has(event.runId)) continue;
    if (!opts.quiet) process.stdout.write(`${eventLine(event, { color: process.stdout.isTTY })}\n`);
    const state = states.get(event.runId);
    if (state) states.set(event.runId, evolve(state, event));
    if (opts.exitWhenDone && allDone()) break;
  }
  if (!opts.exitWhenDone) return;
  let failed = false;
  for (const [id, state] of states) {
    const ok = state.status === "Completed";
    failed ||= !ok;
    process.stdout.write(`\nrun ${state.name ?? id} (${id}): ${state.status}\n${ok ? state.output : (state.error ?? "")}\n`);
  }
  await shutdown(failed ? Exit.RunNotCompleted : Exit.Ok);
}
