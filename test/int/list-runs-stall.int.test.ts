import { describe, expect, it, vi } from "vitest";
import { encodeRunIndexEntry } from "@smallchain/shared";
import { startStack } from "../support/stack.js";

// Consumers of the run index that send nothing, as one did when a cluster's stream leader was killed.
const stall = vi.hoisted(() => ({ on: false }));
vi.mock("@nats-io/jetstream", async (original) => {
  const real = await original<typeof import("@nats-io/jetstream")>();
  return {
    ...real,
    jetstream: (...args: Parameters<typeof real.jetstream>) => {
      const js = real.jetstream(...args);
      return new Proxy(js, {
        get(target, prop, receiver) {
          if (prop !== "consumers" || !stall.on) return Reflect.get(target, prop, receiver) as unknown;
          return {
            get: async () => ({
              consume: async () => {
                let closed: () => void = () => {};
                const whenClosed = new Promise<void>((r) => (closed = r));
                return {
                  async *[Symbol.asyncIterator]() {
                    await whenClosed;
                  },
                  close: async () => closed(),
                };
              },
            }),
          };
        },
      });
    },
  };
});

describe("listing runs", () => {
  it("fails a page whose index consumer sends nothing, to be asked again, instead of waiting for good", async () => {
    await using stack = await startStack([]);
    for (let i = 0; i < 3; i++) await stack.nc.publish(stack.names.runIndexSubject, encodeRunIndexEntry({ runId: `rl${i}`, at: i }));
    await new Promise((r) => setTimeout(r, 200));
    expect((await stack.client.listRuns({ limit: 2 })).total).toBe(3);

    stack.client.store.readStallMs = 300;
    stall.on = true;
    try {
      const started = Date.now();
      await expect(stack.client.listRuns({ limit: 2 })).rejects.toMatchObject({ name: "RetryableError", message: expect.stringMatching(/^listing runs: the run index sent nothing for 300 ms/) });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      stall.on = false;
    }
    expect((await stack.client.listRuns({ limit: 2 })).total).toBe(3);
  });
});
