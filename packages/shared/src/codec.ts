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
  if (!parsed.success) throw new DecodeError(`${what}: ${issuesOf(parsed.error)}`);
  return parsed.data;
}

/** A schema's complaints, each with the path of the field it is about. */
function issuesOf(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
}

/**
 * Decodes what a writer declares typed (the `Sc-Typed` header: Smallchain's own code built it from values its types
 * checked, see `encodeChecked`) with `shaped`, a few cheap checks of its envelope, instead of the whole schema: the
 * schema was checked once, where the value entered the system. Validating every internal message again at every
 * reader took a tenth of a step at concurrency 1 (each process wakes cold for one message; zod's path is the
 * longest). Without the header, or when `shaped` fails, it is `decode`: validated whole, failing with what is wrong.
 */
export function decodeTyped<S extends z.ZodType>(
  schema: S,
  bytes: Uint8Array,
  what: string,
  typed: boolean,
  shaped: (value: unknown) => boolean,
  contentType?: string | null,
): z.infer<S> {
  if (typed) {
    const value = decodeRaw(bytes, what, contentType);
    if (shaped(value)) return value as z.infer<S>;
  }
  return decode(schema, bytes, what, contentType);
}

const CHECK_WRITES = process.env.SC_CHECK_WRITES === "1";

/**
 * Encodes a value Smallchain writes as typed (see `decodeTyped`). With SC_CHECK_WRITES=1 (the test suite sets it) it
 * is validated against its schema first, and one that fails is a bug in the code that built it: it throws, naming
 * what is wrong.
 */
export function encodeChecked<S extends z.ZodType>(schema: S, value: z.infer<S>, what: string): Uint8Array {
  if (CHECK_WRITES) {
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new Error(`writing ${what}: not a valid value of its schema (a bug in the code that built it): ${issuesOf(parsed.error)}`);
  }
  return encode(value);
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
