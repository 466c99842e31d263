import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";

/**
 * A run id as it may appear in a subject token, a KV key and a message id: what any producer outside may
 * send is checked against it, so a hostile id cannot aim an event at another subject or an invalid key.
 */
export const RunId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'");
/** A tool call's id within its run (Smallchain's own are `s<step>c<index>`); same alphabet as a run id. */
export const CallId = RunId;
/** A command's id, `<runId>:<kind>:<step or call>`: also its Nats-Msg-Id and (with ':' as '.') its effects key. */
export const CommandId = z.string().regex(/^[A-Za-z0-9_:-]{1,200}$/, "must be 1-200 letters, digits, '_', '-' or ':'");

export function isRunId(value: string): boolean {
  return /^[A-Za-z0-9_-]{1,64}$/.test(value);
}

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

function base32(bytes: Uint8Array, length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHABET[(bytes[i] ?? 0) % 32];
  return out;
}

/** A new run id, for a run started from outside (CLI, HTTP). Safe as a subject token and a KV key. */
export function newRunId(): string {
  return `r${base32(randomBytes(16), 16)}`;
}

/** A run id derived from something stable (a parent's call, a named run, an ingress message): retries land on the same run. */
export function deriveRunId(...parts: string[]): string {
  return `r${base32(createHash("sha256").update(parts.join("\u0000")).digest(), 16)}`;
}
