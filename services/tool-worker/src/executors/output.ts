/** Keeps the first `limit` bytes of a stream and counts, but drops, the rest. */
export class HeadBuffer {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private total = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    const room = this.limit - this.kept;
    if (room <= 0) return;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(part);
    this.kept += part.length;
  }

  get truncated(): boolean {
    return this.total > this.limit;
  }

  text(): string {
    const bytes = Buffer.concat(this.chunks);
    return (this.truncated ? withoutPartialEnd(bytes) : bytes).toString("utf8");
  }
}

/** `text` cut to its first `maxBytes` bytes (whole characters), then `[<note> at <maxBytes> bytes]`, if it is longer. */
export function capText(text: string, maxBytes: number, note: string): string {
  const head = new HeadBuffer(maxBytes);
  head.push(Buffer.from(text));
  return head.truncated ? `${head.text()}\n[${note} at ${maxBytes} bytes]` : text;
}

/** Keeps the last `limit` bytes of a stream. */
export class TailBuffer {
  private bytes = Buffer.alloc(0);

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    const joined = Buffer.concat([this.bytes, chunk]);
    this.bytes = joined.length > this.limit ? joined.subarray(joined.length - this.limit) : joined;
  }

  text(): string {
    return withoutPartialStart(this.bytes).toString("utf8");
  }
}

const isContinuation = (byte: number): boolean => (byte & 0xc0) === 0x80;

/** A byte cap can cut a character in half; drop the half rather than emit U+FFFD. */
function withoutPartialEnd(bytes: Buffer): Buffer {
  for (let back = 1; back <= Math.min(4, bytes.length); back++) {
    const byte = bytes[bytes.length - back] ?? 0;
    if (isContinuation(byte)) continue;
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? bytes.subarray(0, bytes.length - back) : bytes;
  }
  return bytes;
}

function withoutPartialStart(bytes: Buffer): Buffer {
  let start = 0;
  while (start < 3 && start < bytes.length && isContinuation(bytes[start] ?? 0)) start++;
  return bytes.subarray(start);
}
