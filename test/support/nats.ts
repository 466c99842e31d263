import { randomInt } from "node:crypto";
import { jetstreamManager, JetStreamApiError } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { inject } from "vitest";
// Brings the ProvidedContext augmentation (natsUrl) into scope for inject().
import type {} from "./global-setup.js";

export function natsUrl(): string {
  const url = inject("natsUrl") ?? process.env.NATS_URL;
  if (!url) {
    throw new Error("No NATS URL: neither provided by test/support/global-setup.ts nor set in NATS_URL");
  }
  return url;
}

const LABEL = /^[a-z][a-z0-9]*$/;

/** Unique name prefix valid as a stream name, KV bucket name and subject token, e.g. `tk3j9x0aq`. */
export function uniquePrefix(label = "t"): string {
  if (!LABEL.test(label)) {
    throw new Error(`uniquePrefix label must be lowercase letters/digits starting with a letter, got ${JSON.stringify(label)}`);
  }
  let suffix = "";
  for (let i = 0; i < 8; i++) suffix += randomInt(36).toString(36);
  return label + suffix;
}

/**
 * Deletes every stream created under `prefix`: `${PREFIX}_*` streams plus the backing streams of
 * `${prefix}_*` KV buckets and object stores. Returns the deleted stream names.
 */
export async function cleanupPrefix(nc: NatsConnection, prefix: string): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const starts = [`${prefix.toUpperCase()}_`, `KV_${prefix}_`, `OBJ_${prefix}_`];
  const doomed: string[] = [];
  // Collect first: deleting while paging through the listing can skip names.
  for await (const name of jsm.streams.names()) {
    if (starts.some((s) => name.startsWith(s))) doomed.push(name);
  }
  const deleted: string[] = [];
  for (const name of doomed) {
    try {
      await jsm.streams.delete(name);
      deleted.push(name);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.status === 404)) throw err;
    }
  }
  return deleted;
}
