import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { Client, names, parseConfig, type Metrics, type Names, type RunState, type Service } from "@smallchain/shared";
import { startLlmWorker } from "@smallchain/llm-worker";
import { startProjector } from "@smallchain/projector";
import { startScheduler } from "@smallchain/scheduler";
import { startToolWorker } from "@smallchain/tool-worker";
import { cleanupPrefix, natsUrl, uniquePrefix } from "./nats.js";
import { eventually } from "./processes.js";

export type ServiceName = "scheduler" | "projector" | "llm-worker" | "tool-worker";
export const ALL_SERVICES: ServiceName[] = ["scheduler", "projector", "llm-worker", "tool-worker"];

export type Stack = {
  prefix: string;
  names: Names;
  nc: NatsConnection;
  client: Client;
  /** Parses YAML like `smallchain apply -f` and applies it. */
  apply(yaml: string): ReturnType<Client["apply"]>;
  start(service: ServiceName): Promise<Service>;
  /** Stops every service, deletes every stream and bucket of the prefix. */
  [Symbol.asyncDispose](): Promise<void>;
};

const quiet = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

/** A Smallchain installation under its own prefix, with the chosen services running in this process. */
export async function startStack(
  services: ServiceName[] = ALL_SERVICES,
  env: NodeJS.ProcessEnv = process.env,
  opts: {
    metrics?: Metrics;
    /** The scheduler folds the views itself (SC_SCHEDULER_PROJECTS). */
    schedulerProjects?: boolean;
    /** Its SchedulerOptions.keepRecordedMs. */
    keepRecordedMs?: number;
  } = {},
): Promise<Stack> {
  const prefix = uniquePrefix();
  const n = names(prefix);
  const nc = await connect({ servers: natsUrl() });
  const running: Service[] = [];
  const start = async (service: ServiceName): Promise<Service> => {
    const log = quiet.child({ service });
    const { metrics } = opts;
    const s =
      service === "scheduler"
        ? await startScheduler({ nc, names: n, log, metrics, projects: opts.schedulerProjects ?? false, keepRecordedMs: opts.keepRecordedMs })
        : service === "projector"
          ? await startProjector({ nc, names: n, log, metrics })
          : service === "llm-worker"
            ? await startLlmWorker({ nc, names: n, log, env, maxDeliver: 3, metrics })
            : await startToolWorker({ nc, names: n, log, metrics });
    running.push(s);
    return s;
  };
  const client = await Client.connect(nc, n);
  for (const s of services) await start(s);
  return {
    prefix,
    names: n,
    nc,
    client,
    start,
    apply: async (yaml) => client.apply(parseConfig(yaml, "test.yaml", await client.knownNames())),
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(running.map((s) => s.stop()));
      await cleanupPrefix(nc, prefix);
      await nc.close();
    },
  };
}

/**
 * Throws the completed runs' views away, starts a projector (its consumer must not exist yet: it folds the streams
 * from the start), and returns the views it stores, once each shows its run completed.
 */
export async function viewsRebuilt(stack: Stack, runIds: string[]): Promise<RunState[]> {
  for (const runId of runIds) await stack.client.buckets.runs.delete(runId);
  await stack.start("projector");
  return Promise.all(
    runIds.map((runId) =>
      eventually(async () => {
        const v = await stack.client.getRun(runId);
        return v?.status === "Completed" ? v : undefined;
      }, 10_000, `the view of ${runId} rebuilt by a projector`),
    ),
  );
}
