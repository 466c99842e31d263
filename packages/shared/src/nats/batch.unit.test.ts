import { describe, expect, it } from "vitest";
import { ackSoon, flushAcks, sendSoon } from "./batch.js";

const turn = () => new Promise((r) => setImmediate(r));

describe("ackSoon", () => {
  it("holds an ack back until the next batch of sends, so it leaves in the same write", async () => {
    const order: string[] = [];
    ackSoon({ ack: () => order.push("ack") });
    await turn();
    expect(order).toEqual([]);
    sendSoon(() => order.push("publish"));
    await turn();
    expect(order).toEqual(["publish", "ack"]);
  });

  it("sends an ack on its own after a short delay when nothing else is sent", async () => {
    let acked = 0;
    ackSoon({ ack: () => acked++ });
    ackSoon({ ack: () => acked++ });
    await new Promise((r) => setTimeout(r, 5));
    expect(acked).toBe(0);
    await new Promise((r) => setTimeout(r, 40));
    expect(acked).toBe(2);
  });

  it("goes on with the other acks when one cannot be sent (a closed connection)", () => {
    let acked = 0;
    ackSoon({
      ack: () => {
        throw new Error("connection closed");
      },
    });
    ackSoon({ ack: () => acked++ });
    flushAcks();
    expect(acked).toBe(1);
  });

  it("sends what it holds at once on flushAcks (before a connection closes), and each ack once", async () => {
    let acked = 0;
    ackSoon({ ack: () => acked++ });
    flushAcks();
    expect(acked).toBe(1);
    await new Promise((r) => setTimeout(r, 40));
    sendSoon(() => undefined);
    await turn();
    expect(acked).toBe(1);
  });
});
