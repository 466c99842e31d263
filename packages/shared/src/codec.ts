import { Packr, type Options } from "msgpackr";
import type { z } from "zod";

// Plain maps, no records: any msgpack client in any language can read our messages.
// Undefined fields are left out rather than written as a msgpackr-only extension.
const packr = new Packr({ useRecords: false, skipValues: [undefined] } as Options & { skipValues: unknown[] });

export const ContentType = { Msgpack: "application/msgpack", Json: "application/json" } as const;
export type ContentType = (typeof ContentType)[keyof typeof ContentType];

/** A message that cannot be decoded into its schema. Terminal: redelivering it cannot help. */
export class DecodeError extends Error {
  override name = "DecodeError";
  readonly code = "DECODE";
}

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Accepts msgpack or JSON (by content type, or a leading `{`), then validates: fails closed. */
export function decode<S extends z.ZodType>(schema: S, bytes: Uint8Array, what: string, contentType?: string | null): z.infer<S> {
  const parsed = schema.safeParse(decodeRaw(bytes, what, contentType));
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new DecodeError(`${what}: ${issues}`);
  }
  return parsed.data;
}

/** Decodes msgpack (or JSON) without a schema: for a reader that takes one field and validates that itself. */
export function decodeRaw(bytes: Uint8Array, what: string, contentType?: string | null): unknown {
  try {
    return looksLikeJson(bytes, contentType) ? JSON.parse(new TextDecoder().decode(bytes)) : packr.unpack(bytes);
  } catch (err) {
    throw new DecodeError(`${what}: not valid ${looksLikeJson(bytes, contentType) ? "JSON" : "msgpack"} (${(err as Error).message})`);
  }
}

function looksLikeJson(bytes: Uint8Array, contentType?: string | null): boolean {
  if (contentType) return contentType.includes("json");
  // A msgpack map starts with 0x8x/0xde/0xdf, never with `{` or whitespace.
  const first = bytes[0];
  return first === 0x7b || first === 0x20 || first === 0x0a || first === 0x0d || first === 0x09;
}
