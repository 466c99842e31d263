import { Worker } from "node:worker_threads";
import { replayMetrics, type Logger, type MetricCalls, type Metrics, type Service } from "@smallchain/shared";

/** What the projector's thread is started with (structured-cloned into it). */
export type ProjectorThreadData = {
  /** NATS servers; credentials and TLS come from the environment, as for the service process. */
  servers: string[];
  prefix: string;
  logLevel: string;
  /** Relay the projector's metrics to the main thread (which serves them). */
  metrics: boolean;
};

/** Main thread to the projector's thread. */
export type ToThread = { kind: "stop" };
/** The projector's thread to the main thread. */
export type FromThread = { kind: "started" } | { kind: "failed"; error: string } | { kind: "metrics"; batch: MetricCalls };

export type ProjectorThread = Service & {
  /** Ends the thread at once, as a crash would (it is started again): for tests of exactly that. */
  kill(): Promise<void>;
};

/** The thread's code, built (tests import this module from its source, and run threads from dist/ as they run processes). */
const THREAD_MAIN = new URL(import.meta.url.endsWith(".ts") ? "../dist/thread-main.js" : "./thread-main.js", import.meta.url);

/** Restarts of a thread that died, spaced so a projector that cannot start does not spin. */
const RESTART_AFTER_MS = 1_000;

/**
 * The projector on a worker thread of this process, for `smallchain dev`: nothing on a run's critical path
 * waits for the views, and in one JavaScript thread the projector took a quarter to a third of the CPU of every
 * agent step (it folds and acks every event, and stores the views) from the scheduler and the workers. On its
 * own thread it uses the second core. It has its own NATS connection; should the thread die, it is started
 * again (its events were not acked, so they come back and nothing is lost).
 */
export async function startProjectorThread(
  opts: Omit<ProjectorThreadData, "metrics"> & { log: Logger; metrics?: Metrics | undefined },
): Promise<ProjectorThread> {
  const { log, metrics, ...rest } = opts;
  const data: ProjectorThreadData = { ...rest, metrics: metrics !== undefined };
  let worker: Worker | undefined;
  let stopping = false;

  const spawn = (): Promise<Worker> =>
    new Promise((resolve, reject) => {
      const w = new Worker(THREAD_MAIN, { workerData: data });
      let started = false;
      w.on("message", (m: FromThread) => {
        if (m.kind === "started") {
          started = true;
          resolve(w);
        } else if (m.kind === "failed") {
          reject(new Error(`the projector did not start: ${m.error}`));
        } else if (m.kind === "metrics" && metrics) {
          replayMetrics(metrics, m.batch);
        }
      });
      w.on("error", (err) => {
        if (!started) reject(err);
        else log.error({ err }, "the projector's thread failed");
      });
      w.on("exit", (code) => {
        if (!started) {
          reject(new Error(`the projector's thread exited with ${code} before it started`));
          return;
        }
        if (stopping || worker !== w) return;
        worker = undefined;
        log.error({ code }, `the projector's thread exited; starting it again in ${RESTART_AFTER_MS} ms`);
        const again = () => {
          if (stopping) return;
          spawn().then(
            (next) => {
              if (stopping) void next.terminate();
              else worker = next;
            },
            (err: unknown) => {
              log.error({ err }, `starting the projector's thread again failed; trying again in ${RESTART_AFTER_MS} ms`);
              setTimeout(again, RESTART_AFTER_MS).unref();
            },
          );
        };
        setTimeout(again, RESTART_AFTER_MS).unref();
      });
    });

  worker = await spawn();
  return {
    async stop() {
      stopping = true;
      const w = worker;
      if (!w) return;
      // The thread stores every view it folded and sends its acks before it goes; past 15 s it is ended.
      const exited = new Promise<void>((resolve) => w.once("exit", () => resolve()));
      w.postMessage({ kind: "stop" } satisfies ToThread);
      const timeout = setTimeout(() => void w.terminate(), 15_000);
      await exited;
      clearTimeout(timeout);
    },
    async kill() {
      await worker?.terminate();
    },
  };
}
