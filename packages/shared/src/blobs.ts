import { StorageType } from "@nats-io/jetstream";
import { Objm, type ObjectStore } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { RetryableError } from "./errors.js";
import type { Names } from "./names.js";
import type { BlobRef } from "./run/messages.js";
import { replicasFromEnv } from "./nats/provision.js";

/**
 * Tool results above this size go to the JetStream Object Store, and their event carries a reference and a
 * preview: no event may come near NATS's max_payload (1 MB by default), whatever a tool returns.
 */
export const INLINE_RESULT_BYTES = 256 * 1024;

/** How much of an offloaded result its event keeps, for people reading the stream. */
const PREVIEW_CHARS = 2_000;

/** What an event holds of an offloaded result: its start, and where the rest is. */
function previewOf(text: string, ref: BlobRef): string {
  return `${text.slice(0, PREVIEW_CHARS)}\n[… ${ref.bytes} bytes in all, in the object store as ${ref.object}]`;
}

/** The installation's Object Store bucket of large payloads (`<prefix>_blobs`). */
export class Blobs {
  private constructor(private readonly store: ObjectStore) {}

  /** Opens the bucket, creating it (with SC_REPLICAS copies) when it is not there yet. */
  static async open(nc: NatsConnection, n: Names, opts: { replicas?: number } = {}): Promise<Blobs> {
    const objm = new Objm(nc);
    try {
      return new Blobs(await objm.create(n.blobsBucket, { storage: StorageType.File, replicas: opts.replicas ?? replicasFromEnv() }));
    } catch (err) {
      // There already, with other settings (another replica count): use it as it is.
      try {
        return new Blobs(await objm.open(n.blobsBucket));
      } catch {
        throw err;
      }
    }
  }

  /**
   * Stores a tool call's whole result as the object `<run>/<call>` (per run, so removing a run removes its
   * objects; a retried call rewrites the same one) and returns what its ToolCallCompleted holds instead.
   */
  async keepResult(runId: string, callId: string, text: string): Promise<{ result: string; resultRef: BlobRef }> {
    const object = `${runId}/${callId}`;
    const info = await this.store.putBlob({ name: object }, new TextEncoder().encode(text));
    const resultRef = { object, bytes: info.size, digest: info.digest };
    return { result: previewOf(text, resultRef), resultRef };
  }

  /** The text of a stored result. A missing object (removed, or not replicated yet) is retried later. */
  async text(ref: BlobRef): Promise<string> {
    const bytes = await this.store.getBlob(ref.object);
    if (!bytes) throw new RetryableError(`object ${ref.object} (${ref.bytes} bytes) is not in the object store`);
    return new TextDecoder().decode(bytes);
  }

  /** Removes every object of these runs (what `gc` removes with them); one listing of the bucket. */
  async removeRuns(runIds: Set<string>): Promise<number> {
    const doomed = (await this.store.list()).filter((o) => !o.deleted && runIds.has(o.name.slice(0, o.name.indexOf("/"))));
    for (const o of doomed) await this.store.delete(o.name);
    return doomed.length;
  }
}
