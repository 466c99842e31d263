import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeError, decode, encode } from "./codec.js";
import { LlmCommand, TaskRequest, ToolCommand } from "./commands.js";
import { RunEvent } from "./events.js";

/** Cases per property; the figures in docs/reliability.md count them. */
const CODEC_RUNS = 2_000;

const SCHEMAS = [RunEvent, LlmCommand, ToolCommand, TaskRequest];
const CONTENT_TYPES = [undefined, null, "application/json", "application/msgpack", "text/plain", "json; charset=utf-8", ""];

/** Decodes, and returns the error it threw (undefined when it decoded). */
function tryDecode(schemaIndex: number, bytes: Uint8Array, contentType: string | null | undefined): unknown {
  try {
    decode(SCHEMAS[schemaIndex]!, bytes, "fuzzed message", contentType);
    return undefined;
  } catch (err) {
    return err;
  }
}

const schemaIndex = fc.nat({ max: SCHEMAS.length - 1 });
const contentType = fc.constantFrom(...CONTENT_TYPES);

describe("decoding untrusted bytes", () => {
  it("throws nothing but DecodeError for arbitrary bytes", () => {
    fc.assert(
      fc.property(schemaIndex, fc.uint8Array({ maxLength: 512 }), contentType, (i, bytes, ct) => {
        const err = tryDecode(i, bytes, ct);
        expect(err === undefined || err instanceof DecodeError).toBe(true);
      }),
      { numRuns: CODEC_RUNS },
    );
  });

  it("throws nothing but DecodeError for any JSON text, and for arbitrary values packed as msgpack", () => {
    const json = fc.json().map((text) => ({ bytes: new TextEncoder().encode(text), ct: "application/json" as string | undefined }));
    const packed = fc.anything({ withBigInt: false, withTypedArray: true, withMap: true, withSet: true, withDate: true }).map((value) => {
      let bytes: Uint8Array;
      try {
        bytes = encode(value);
      } catch {
        bytes = new Uint8Array([0xc1]);
      }
      return { bytes, ct: undefined as string | undefined };
    });
    fc.assert(
      fc.property(schemaIndex, fc.oneof(json, packed), (i, { bytes, ct }) => {
        const err = tryDecode(i, bytes, ct);
        expect(err === undefined || err instanceof DecodeError).toBe(true);
      }),
      { numRuns: CODEC_RUNS },
    );
  });

  it("throws nothing but DecodeError for a valid message with bytes flipped, cut or appended", () => {
    const valid = encode({ id: "r1:tool:s1c0", runId: "r1", callId: "s1c0", step: 1, tool: { kind: "builtin", name: "add", description: "adds", parameters: {}, builtin: "add" }, args: { a: 1, b: 2 } });
    const mutated = fc.tuple(fc.nat({ max: valid.length }), fc.uint8Array({ maxLength: 8 }), fc.nat({ max: 8 })).map(([at, insert, cut]) => {
      const out = new Uint8Array(valid.length - Math.min(cut, valid.length - at) + insert.length);
      out.set(valid.subarray(0, at));
      out.set(insert, at);
      out.set(valid.subarray(at + Math.min(cut, valid.length - at)), at + insert.length);
      return out;
    });
    fc.assert(
      fc.property(schemaIndex, mutated, contentType, (i, bytes, ct) => {
        const err = tryDecode(i, bytes, ct);
        expect(err === undefined || err instanceof DecodeError).toBe(true);
      }),
      { numRuns: CODEC_RUNS },
    );
  });
});
