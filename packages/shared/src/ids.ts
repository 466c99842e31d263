import { createHash, randomBytes } from "node:crypto";

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
