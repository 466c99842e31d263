import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";

/**
 * What goes live on `sc.stream.<runId>` (core NATS, JSON, not persisted): the model's tokens as they arrive and
 * tool progress. Missing them loses nothing; the run's events hold every result.
 */
export const LiveMessage = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("tokens"), runId: z.string(), step: z.number(), text: z.string(), at: z.number() }),
  z.object({
    kind: z.literal("tool"),
    runId: z.string(),
    callId: z.string(),
    tool: z.string(),
    status: z.enum(["started", "finished", "failed"]),
    at: z.number(),
    durationMs: z.number().optional(),
  }),
]);
export type LiveMessage = z.infer<typeof LiveMessage>;

/** Best effort, like everything live: a message that cannot be sent is dropped, never the caller's failure. */
export function publishLive(nc: NatsConnection, subject: string, message: LiveMessage): void {
  if (nc.isClosed()) return;
  try {
    nc.publish(subject, JSON.stringify(message));
  } catch {
    // e.g. over max_payload; the run's events hold every result anyway
  }
}

/** Live token text goes out in pieces of at most this many characters (a message must fit max_payload). */
const LIVE_CHUNK_CHARS = 64 * 1024;

/** Collects token deltas and publishes them at most every `intervalMs`: a message per chunk would cost more than the tokens. */
export class LiveTokens {
  private pending = "";
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
    private readonly runId: string,
    private readonly step: number,
    private readonly intervalMs = 50,
  ) {}

  push(text: string): void {
    if (text === "") return;
    this.pending += text;
    this.timer ??= setTimeout(() => this.flush(), this.intervalMs);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending === "") return;
    for (let i = 0; i < this.pending.length; i += LIVE_CHUNK_CHARS) {
      publishLive(this.nc, this.subject, { kind: "tokens", runId: this.runId, step: this.step, text: this.pending.slice(i, i + LIVE_CHUNK_CHARS), at: Date.now() });
    }
    this.pending = "";
  }
}
