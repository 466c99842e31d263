import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { startToolWorker } from "@smallchain/tool-worker";
import { Header, decodeRaw, encode, type RunEvent, type ToolCommand } from "@smallchain/shared";
import { adderConfig } from "../support/configs.js";
import { eventually } from "../support/processes.js";
import { startStack, type Stack } from "../support/stack.js";

const addTool = { kind: "builtin", name: "add", description: "adds", parameters: { type: "object" }, builtin: "add" } as const;

function addCommand(runId: string, callId: string, a: number, b: number): ToolCommand {
  return { id: `${runId}:tool:${callId}`, runId, callId, step: 1, tool: addTool, args: { a, b } };
}

function toolCallRequested(runId: string, callId: string, command: unknown): RunEvent {
  return {
    id: `${runId}:call:${callId}`,
    type: "ToolCallRequested",
    v: 1,
    runId,
    at: Date.now(),
    ...(command !== undefined && { command: command instanceof Uint8Array ? command : encode(command) }),
    data: { step: 1, callId, toolCallId: `t-${callId}`, tool: "add", args: {}, kind: "tool" },
  } as RunEvent;
}

/** Publishes a decision on the run's tool lane as any NATS client could, with the headers given. */
function publishDecision(stack: Stack, event: RunEvent, headerValues: Record<string, string>) {
  const h = headers();
  for (const [k, v] of Object.entries(headerValues)) h.set(k, v);
  return jetstream(stack.nc).publish(stack.names.runLaneSubject(event.runId, "tool"), encode(event), { headers: h, msgID: event.id });
}

describe("decisions that carry their commands", () => {
  it("send a run's LLM and tool calls to the workers with nothing on the COMMANDS stream", async () => {
    await using stack = await startStack();
    const applied = await stack.apply(adderConfig(["{ tool_calls: [ { name: add, arguments: { a: 2, b: 3 } } ] }", '{ content: "{{last_tool_result}}" }'], 1));
    const runId = applied.runs[0]!.runId;
    expect((await stack.client.waitForRun(runId)).output).toBe("5");

    const events = await stack.client.events(runId);
    const carrying = events.filter((e) => e.command !== undefined);
    expect(carrying.map((e) => e.type)).toEqual(["LLMRequested", "ToolCallRequested", "LLMRequested"]);
    expect(decodeRaw(carrying[1]!.command!, "command")).toMatchObject({ id: `${runId}:tool:s1c0`, callId: "s1c0", tool: { name: "add" }, args: { a: 2, b: 3 } });
    // Each is on its kind's lane, and says whose it is (a worker's consumer skips what else is on its lane unread).
    const jsm = await jetstreamManager(stack.nc);
    const stored = await Promise.all(carrying.map((e) => jsm.streams.getMessage(stack.names.eventsStream, { seq: e.seq })));
    expect(stored.map((m) => [m?.subject, m?.header.get(Header.Command)])).toEqual([
      [stack.names.runLaneSubject(runId, "llm"), "llm"],
      [stack.names.runLaneSubject(runId, "tool"), "tool"],
      [stack.names.runLaneSubject(runId, "llm"), "llm"],
    ]);
    expect(carrying.map((e) => e.lane)).toEqual(["llm", "tool", "llm"]);
    expect((await jsm.streams.info(stack.names.commandsStream)).state.last_seq).toBe(0);
    // Each worker's consumer of decisions took every decision: none waits, none is pending.
    for (const durable of [stack.names.consumers.llmDecisions, stack.names.consumers.toolDecisions]) {
      const info = await jsm.consumers.info(stack.names.eventsStream, durable);
      expect({ durable, pending: info.num_pending, unacked: info.num_ack_pending }).toEqual({ durable, pending: 0, unacked: 0 });
    }
  });

  it("terminate a decision whose command is missing or malformed, saying what is wrong, and go on with the next", async () => {
    await using stack = await startStack([]);
    const logged: { err?: string; msg: string }[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void logged.push(JSON.parse(line) as { err?: string; msg: string }) });
    const worker = await startToolWorker({ nc: stack.nc, names: stack.names, log });
    const publish = (event: RunEvent, kind: string) => publishDecision(stack, event, { [Header.Command]: kind });
    await publish(toolCallRequested("rbad1", "s1c0", { not: "a command" }), "tool");
    await publish(toolCallRequested("rbad2", "s1c0", undefined), "tool");
    await publish(toolCallRequested("rbad3", "s1c0", new Uint8Array([0xc1, 0xc1])), "tool");
    // A decision on its lane that is another kind's is not this worker's: acked unread, not run.
    await publish(toolCallRequested("rother", "s1c0", addCommand("rother", "s1c0", 1, 1)), "llm");
    await publish(toolCallRequested("rgood", "s1c0", addCommand("rgood", "s1c0", 20, 22)), "tool");

    const done = await eventually(async () => {
      const events = await stack.client.events("rgood");
      return events.find((e) => e.type === "ToolCallCompleted");
    }, 10_000, "the good decision's call to complete");
    expect(done).toMatchObject({ result: true, data: { callId: "s1c0", result: "42" } });
    for (const runId of ["rbad1", "rbad2", "rbad3", "rother"]) {
      expect((await stack.client.events(runId)).map((e) => e.type)).toEqual(["ToolCallRequested"]);
    }
    const jsm = await jetstreamManager(stack.nc);
    const info = await eventually(async () => {
      const i = await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.toolDecisions);
      return i.num_ack_pending === 0 && i.num_pending === 0 && i;
    }, 10_000, "every decision acked or terminated");
    expect(info.delivered.stream_seq).toBeGreaterThan(0);
    await worker.stop();
    const invalid = logged.filter((l) => l.msg === "terminating an invalid tool command").map((l) => l.err);
    expect(invalid).toEqual([
      expect.stringMatching(/^tool command in decision \d+ on .*\.run\.rbad1\.tool: id: /),
      expect.stringMatching(/^tool command in decision \d+ on .*\.run\.rbad2\.tool: the decision carries no command$/),
      expect.stringMatching(/^tool command in decision \d+ on .*\.run\.rbad3\.tool: not valid msgpack/),
    ]);
  });

  it("take a typed decision's command after checking its envelope, and still terminate one that is invalid, saying what is wrong", async () => {
    await using stack = await startStack([]);
    const logged: { err?: string; msg: string }[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void logged.push(JSON.parse(line) as { err?: string; msg: string }) });
    const worker = await startToolWorker({ nc: stack.nc, names: stack.names, log });
    const publishTyped = (event: RunEvent) => publishDecision(stack, event, { [Header.Command]: "tool", [Header.Typed]: "1" });
    // Its envelope is a command's, its tool is not there: the work fails, and only then is it checked whole.
    const { tool: _tool, ...toolless } = addCommand("rtyped1", "s1c0", 1, 2);
    await publishTyped(toolCallRequested("rtyped1", "s1c0", toolless));
    // Not even a command's envelope: checked whole at once.
    await publishTyped(toolCallRequested("rtyped2", "s1c0", { runId: "rtyped2" }));
    await publishTyped(toolCallRequested("rtyped3", "s1c0", addCommand("rtyped3", "s1c0", 40, 2)));

    const done = await eventually(async () => (await stack.client.events("rtyped3")).find((e) => e.type === "ToolCallCompleted"), 10_000, "the typed call to complete");
    expect(done).toMatchObject({ result: true, data: { callId: "s1c0", result: "42" } });
    const jsm = await jetstreamManager(stack.nc);
    await eventually(async () => {
      const i = await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.toolDecisions);
      return i.num_ack_pending === 0 && i.num_pending === 0 && i.num_redelivered === 0;
    }, 10_000, "every decision acked or terminated, none redelivered");
    await worker.stop();
    for (const runId of ["rtyped1", "rtyped2"]) expect((await stack.client.events(runId)).map((e) => e.type)).toEqual(["ToolCallRequested"]);
    expect(logged.filter((l) => l.msg === "terminating an invalid tool command").map((l) => l.err)).toEqual([
      expect.stringMatching(/^tool command in decision \d+ on .*\.run\.rtyped1\.tool: tool: /),
      expect.stringMatching(/^tool command in decision \d+ on .*\.run\.rtyped2\.tool: id: /),
    ]);
  });
});
