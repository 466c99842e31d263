import {
  Blobs,
  CancelledRuns,
  EventStore,
  LiveTokens,
  costOf,
  LlmCommand,
  provision,
  workerAckWaitMs,
  startCommandWorker,
  type Logger,
  type Metrics,
  type Names,
  type NatsConnection,
  type RunEvent,
  type Service,
} from "@smallchain/shared";
import { BlobTexts } from "./blob-texts.js";
import { ContextReader } from "./context-reader.js";
import { mockProvider } from "./providers/mock.js";
import { openAIProvider } from "./providers/openai.js";
import type { Provider } from "./providers/provider.js";

export type LlmWorkerOptions = {
  nc: NatsConnection;
  names: Names;
  log: Logger;
  concurrency?: number;
  maxDeliver?: number;
  /** Without a heartbeat for this long, a command goes to another worker (default: SC_LLM_ACK_WAIT_MS, else 60 s). */
  ackWaitMs?: number;
  env?: NodeJS.ProcessEnv;
  /** The process's metrics: commands, redeliveries, tokens per llm. */
  metrics?: Metrics | undefined;
};

/** Turns LLM commands into LLMResponded/LLMFailed events. Stateless: run as many replicas as you like. */
export async function startLlmWorker(opts: LlmWorkerOptions): Promise<Service> {
  const { nc, names: n, log } = opts;
  const buckets = await provision(nc, n);
  const cancelled = await CancelledRuns.watch(buckets.cancelled, log);
  const store = await EventStore.open(nc, n);
  // Context windows are folded from the runs' streams.
  const contexts = new ContextReader(store, log);
  const blobTexts = new BlobTexts(await Blobs.open(nc, n));
  const metrics = opts.metrics?.service("llm-worker");
  const providers: Record<"openai" | "mock", Provider> = { openai: openAIProvider(opts.env), mock: mockProvider() };

  const loop = await startCommandWorker({
    nc,
    names: n,
    store,
    log,
    durable: n.consumers.llmWorker,
    filterSubject: n.llmCommandSubject,
    kind: "llm",
    subjectOf: () => n.llmCommandSubject,
    schema: LlmCommand,
    what: "llm",
    concurrency: opts.concurrency ?? 64,
    ackWaitMs: opts.ackWaitMs ?? workerAckWaitMs("llm"),
    maxDeliver: opts.maxDeliver ?? 6,
    metrics,
    cancelled,
    execute: async (command, { signal }): Promise<RunEvent> => {
      // Offloaded tool results go to the model whole.
      const messages = await blobTexts.resolve(await contexts.read(command.runId, command.messageCount, command.delta));
      const { llm, tools } = await contexts.agentOf(command.runId, command.llm && command.tools ? { llm: command.llm, tools: command.tools } : undefined);
      const call = { ...command, llm, tools };
      const started = Date.now();
      const live = new LiveTokens(nc, n.liveSubject(command.runId), command.runId, command.step);
      let reply;
      try {
        reply = await providers[llm.provider]({ command: call, messages, signal, onDelta: (text) => live.push(text) });
      } finally {
        live.flush();
      }
      log.debug({ runId: command.runId, step: command.step, usage: reply.usage }, "llm responded");
      // Priced by the llm's config (pricing), once, here: the event records the cost the run is charged.
      const costUsd = costOf(llm, reply.usage);
      metrics?.llmUsage(llm.name, reply.usage, costUsd);
      return {
        id: `${command.runId}:llm-done:${command.step}`,
        type: "LLMResponded",
        v: 1,
        runId: command.runId,
        at: Date.now(),
        causationId: command.id,
        data: { step: command.step, ...reply, durationMs: Date.now() - started, ...(costUsd !== undefined && { costUsd }) },
      };
    },
    failure: (command, reason, retryable): RunEvent => ({
      id: `${command.runId}:llm-done:${command.step}`,
      type: "LLMFailed",
      v: 1,
      runId: command.runId,
      at: Date.now(),
      causationId: command.id,
      data: { step: command.step, error: reason, retryable },
    }),
  });
  log.info({ prefix: n.prefix }, "llm-worker started");
  return {
    async stop() {
      await loop.stop();
      cancelled.stop();
    },
  };
}
