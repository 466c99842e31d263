import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { displayStatus, findCall } from "@smallchain/shared";
import { startGateway, type Gateway } from "@smallchain/gateway";
import { startFakeOpenAI, scriptByAgent, type ChatRequest, type FakeOpenAI } from "../support/fake-openai.js";
import { cli, eventually } from "../support/processes.js";
import { startStack, type Stack } from "../support/stack.js";

const TOKEN = "test-gateway-token";
const USAGE = { prompt_tokens: 10, completion_tokens: 5 };

/** The model asks for one call of `tool`, then reports the tool message it got back. */
function askThenReport(tool: string, args: unknown) {
  return [{ toolCalls: [{ name: tool, arguments: args }], usage: USAGE }, { content: "reported", usage: USAGE }];
}

function config(baseUrl: string): string {
  return `
llms:
  - { name: gpt, provider: openai, model: gpt-4o, base_url: ${baseUrl} }
agents:
  - { name: careful, system_prompt: "agent careful", llm: gpt, tools: [ careful_add ] }
  - { name: curious, system_prompt: "agent curious", llm: gpt, tools: [ ask ] }
  - { name: payer, system_prompt: "agent payer", llm: gpt, tools: [ pay ] }
  - { name: sleeper, system_prompt: "agent sleeper", llm: gpt, tools: [ sleep_until ] }
  - { name: hasty, system_prompt: "agent hasty", llm: gpt, tools: [ { tool: careful_add, approval: { timeout: 1s, on_timeout: reject } }, ask_briefly ] }
tools:
  - { name: ask_briefly, builtin: human_input, timeout: 1500ms, on_timeout: fail }
  - { name: careful_add, builtin: add, approval: required }
  - { name: ask, builtin: human_input }
  - { name: sleep_until, builtin: sleep_until }
  - name: pay
    parameters: { type: object, properties: { invoice: { type: number } } }
    callback: { subject: "bank.PREFIX.payments" }
tasks:
  - { name: add_carefully, user_message: "add 1 and 2", agent: careful }
  - { name: ask_human, user_message: "find out", agent: curious }
  - { name: pay_invoice, user_message: "pay invoice 42", agent: payer }
  - { name: nap, user_message: "nap", agent: sleeper }
  - { name: hurry, user_message: "quick", agent: hasty }
`;
}

describe("runs that wait for people and the outside world", () => {
  let stack: Stack;
  let fake: FakeOpenAI;
  let gateway: Gateway;
  const env = () => ({ NATS_URL: process.env.NATS_URL ?? "", SC_PREFIX: stack.prefix });

  beforeAll(async () => {
    const byAgent = scriptByAgent({
      "agent careful": askThenReport("careful_add", { a: 1, b: 2 }),
      "agent curious": askThenReport("ask", { question: "Which account should I use?" }),
      "agent payer": askThenReport("pay", { invoice: 42 }),
      "agent hasty": [
        { toolCalls: [{ name: "careful_add", arguments: { a: 1, b: 1 } }, { name: "ask_briefly", arguments: { question: "now?" } }], usage: USAGE },
        { content: "gave up waiting", usage: USAGE },
      ],
    });
    fake = await startFakeOpenAI((req: ChatRequest, i) => {
      if (!String(req.messages[0]?.content).includes("agent sleeper")) return byAgent(req, i);
      // The sleeper sleeps until the time its user message names.
      if (req.messages.some((m) => m.role === "assistant")) return { content: "awake", usage: USAGE };
      const time = String(req.messages[1]?.content).replace("sleep until ", "");
      return { toolCalls: [{ name: "sleep_until", arguments: { time } }], usage: USAGE };
    });
    stack = await startStack(["scheduler", "projector", "tool-worker"], { ...process.env, OPENAI_API_KEY: "sk-test" });
    await stack.start("llm-worker");
    await stack.apply(config(fake.url).replace("PREFIX", stack.prefix));
    gateway = await startGateway({ nc: stack.nc, names: stack.names, log: pino({ level: "silent" }), token: TOKEN, port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await gateway?.stop();
    await stack?.[Symbol.asyncDispose]();
    await fake?.close();
  });

  const start = async (task: string) => (await stack.client.startRun({ task })).runId;
  const until = (runId: string, status: string, timeoutMs = 15_000) =>
    stack.client.waitForRun(runId, { timeoutMs, until: (s) => displayStatus(s) === status || (status !== "Completed" && s.status !== "Running" && s.status !== "Requested") });
  const toolMessageSeenBy = (agent: string) =>
    eventually(
      () => {
        const reqs = fake.requests.filter((r) => String(r.messages[0]?.content).includes(agent) && r.messages.some((m) => m.role === "tool"));
        return reqs.length > 0 && reqs;
      },
      10_000,
      `the model to get ${agent}'s tool result`,
    );
  const http = async (method: string, path: string, body?: unknown, token: string | null = TOKEN) => {
    const res = await fetch(`${gateway.url}${path}`, {
      method,
      headers: { "content-type": "application/json", ...(token !== null && { authorization: `Bearer ${token}` }) },
      ...(body !== undefined && { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const request = async (subject: string, body: unknown) => {
    const reply = await stack.nc.request(subject, JSON.stringify(body), { timeout: 5000 });
    return reply.json<Record<string, unknown>>();
  };

  describe("approval", () => {
    it("waits as AwaitingApproval, is listed by get approvals, and runs the tool once approved with the CLI", async () => {
      const runId = await start("add_carefully");
      const waiting = await until(runId, "AwaitingApproval");
      expect(findCall(waiting, "s1c0")?.status).toBe("awaitingApproval");

      const runs = await cli(["get", "runs"], env());
      expect(runs.stdout).toMatch(new RegExp(`AwaitingApproval\\s+careful\\s+add_carefully\\s+${runId}`));
      const approvals = await eventually(async () => {
        const r = await cli(["get", "approvals", "-o", "json"], env());
        const list = JSON.parse(r.stdout) as { runId: string; callId: string; args: unknown; digest: string }[];
        return list.find((w) => w.runId === runId);
      });
      expect(approvals).toMatchObject({ callId: "s1c0", args: { a: 1, b: 2 }, tool: "careful_add" });
      const table = await cli(["get", "approvals"], env());
      expect(table.stdout).toMatch(new RegExp(`${runId}\\s+s1c0\\s+approval\\s+careful_add\\s+careful\\s+\\{"a":1,"b":2\\}`));

      const approved = await cli(["approve", runId, "s1c0", "--comment", "fine", "--by", "ann", "--digest", approvals.digest], env());
      expect(approved).toMatchObject({ code: 0, stdout: `approved s1c0 of run ${runId}\n` });

      const done = await until(runId, "Completed");
      expect(done.status).toBe("Completed");
      const events = await stack.client.events(runId);
      expect(events.filter((e) => e.type === "ToolCallCompleted").map((e) => e.data)).toEqual([expect.objectContaining({ callId: "s1c0", result: "3" })]);
      expect(events.find((e) => e.type === "ToolCallApproved")?.data).toEqual({ callId: "s1c0", by: "ann", comment: "fine" });
      await eventually(async () => (await stack.client.listWaits()).every((w) => w.runId !== runId), 5000, "the approval to leave the list");

      const again = await cli(["approve", runId, "s1c0"], env());
      expect(again.code).toBe(4);
      expect(again.stderr).toContain(`run ${runId} has ended (Completed)`);
    });

    it("hands a CLI rejection and its comment to the model as the tool's result, and the tool never runs", async () => {
      const runId = await start("add_carefully");
      await until(runId, "AwaitingApproval");

      const rejected = await cli(["reject", runId, "s1c0", "--comment", "use subtract instead", "--by", "bob"], env());
      expect(rejected.code).toBe(0);

      await until(runId, "Completed");
      const events = await stack.client.events(runId);
      expect(events.some((e) => e.type === "ToolCallCompleted")).toBe(false);
      const seen = await toolMessageSeenBy("agent careful");
      expect(seen.flatMap((r) => r.messages.filter((m) => m.role === "tool").map((m) => m.content))).toContain(
        "The tool call was rejected by bob and did not run. Comment: use subtract instead",
      );
    });

    it("takes approvals and rejections over HTTP, refusing requests without the bearer token or with bad bodies", async () => {
      const approveMe = await start("add_carefully");
      const rejectMe = await start("add_carefully");
      await until(approveMe, "AwaitingApproval");
      await until(rejectMe, "AwaitingApproval");

      expect((await http("POST", `/runs/${approveMe}/calls/s1c0/approval`, { approved: true }, null)).status).toBe(401);
      expect((await http("POST", `/runs/${approveMe}/calls/s1c0/approval`, { approved: true }, "wrong")).status).toBe(401);
      const bad = await http("POST", `/runs/${approveMe}/calls/s1c0/approval`, { approve: "yes" });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatch(/approved: .*|unknown field\(s\) approve/);
      expect((await http("POST", `/runs/${approveMe}/calls/s1c0/approval`, "{not json")).status).toBe(400);
      const wrongDigest = await http("POST", `/runs/${approveMe}/calls/s1c0/approval`, { approved: true, digest: "0000" });
      expect(wrongDigest).toMatchObject({ status: 409, body: { code: "conflict" } });
      expect((await http("POST", `/runs/nosuchrun/calls/s1c0/approval`, { approved: true })).status).toBe(404);
      const pending = await http("GET", "/approvals");
      expect((pending.body as unknown as { runId: string }[]).map((w) => w.runId)).toEqual(expect.arrayContaining([approveMe, rejectMe]));

      expect(await http("POST", `/runs/${approveMe}/calls/s1c0/approval`, { approved: true, by: "carol" })).toMatchObject({
        status: 200,
        body: { ok: true, event: "ToolCallApproved" },
      });
      expect((await http("POST", `/runs/${approveMe}/calls/s1c0/approval`, { approved: false })).status).toBe(409);
      expect((await http("POST", `/runs/${rejectMe}/calls/s1c0/approval`, { approved: false, comment: "not today" })).status).toBe(200);

      expect((await until(approveMe, "Completed")).lastToolResult).toBe("3");
      expect((await until(rejectMe, "Completed")).lastToolResult).toBe("The tool call was rejected and did not run. Comment: not today");
      const view = await http("GET", `/runs/${approveMe}`);
      expect(view.body).toMatchObject({ status: "Completed", displayStatus: "Completed" });
    });

    it("takes approvals and rejections as NATS requests from any client, answering refusals with the reason", async () => {
      const approveMe = await start("add_carefully");
      const rejectMe = await start("add_carefully");
      await until(approveMe, "AwaitingApproval");
      await until(rejectMe, "AwaitingApproval");

      expect(await request(stack.names.approvalSubject(rejectMe, "s9c9"), { approved: true })).toMatchObject({ ok: false, code: "not_found" });
      expect(await request(stack.names.approvalSubject(rejectMe, "s1c0"), { yes: 1 })).toMatchObject({ ok: false, code: "invalid" });
      expect(await request(stack.names.approvalSubject(approveMe, "s1c0"), { approved: true, by: "dan" })).toMatchObject({ ok: true, event: "ToolCallApproved" });
      expect(await request(stack.names.approvalSubject(rejectMe, "s1c0"), { approved: false, comment: "too risky" })).toMatchObject({ ok: true, event: "ToolCallRejected" });
      expect(await request(stack.names.approvalSubject(rejectMe, "s1c0"), { approved: true })).toMatchObject({ ok: false, code: "conflict" });

      expect((await until(approveMe, "Completed")).lastToolResult).toBe("3");
      expect((await until(rejectMe, "Completed")).lastToolResult).toContain("Comment: too risky");
    });
  });

  describe("human input", () => {
    it("waits as AwaitingHuman and gives the answer from the CLI, HTTP or NATS to the model", async () => {
      const viaCli = await start("ask_human");
      const viaHttp = await start("ask_human");
      const viaNats = await start("ask_human");
      for (const id of [viaCli, viaHttp, viaNats]) await until(id, "AwaitingHuman");
      const waits = await eventually(async () => {
        const w = (await stack.client.listWaits("human")).filter((x) => [viaCli, viaHttp, viaNats].includes(x.runId));
        return w.length === 3 && w;
      });
      expect(waits[0]?.question).toBe("Which account should I use?");

      expect((await cli(["respond", viaCli, "s1c0", "the savings account"], env())).code).toBe(0);
      expect((await http("POST", `/runs/${viaHttp}/calls/s1c0/response`, { answer: "checking" })).status).toBe(200);
      expect(await request(stack.names.respondSubject(viaNats, "s1c0"), { answer: "joint" })).toMatchObject({ ok: true });
      expect(await request(stack.names.respondSubject(viaNats, "s1c0"), { answer: "twice" })).toMatchObject({ ok: false, code: "conflict" });

      expect((await until(viaCli, "Completed")).lastToolResult).toBe("the savings account");
      expect((await until(viaHttp, "Completed")).lastToolResult).toBe("checking");
      expect((await until(viaNats, "Completed")).lastToolResult).toBe("joint");
      const seen = await toolMessageSeenBy("agent curious");
      expect(seen.flatMap((r) => r.messages.filter((m) => m.role === "tool").map((m) => m.content))).toEqual(
        expect.arrayContaining(["the savings account", "checking", "joint"]),
      );
    });
  });

  describe("callbacks", () => {
    it("hands the arguments out with a one-time token; the right token completes the call, wrong and reused ones are refused", async () => {
      const handedOut: { runId: string; callId: string; args: unknown; token: string; reply: { subject: string } }[] = [];
      const sub = stack.nc.subscribe(`bank.${stack.prefix}.payments`, { callback: (_e, m) => void handedOut.push(m.json()) });
      const viaNats = await start("pay_invoice");
      const viaHttp = await start("pay_invoice");
      await until(viaNats, "AwaitingCallback");
      await until(viaHttp, "AwaitingCallback");
      const natsReq = await eventually(() => handedOut.find((h) => h.runId === viaNats));
      const httpReq = await eventually(() => handedOut.find((h) => h.runId === viaHttp));
      sub.unsubscribe();
      expect(natsReq).toMatchObject({ callId: "s1c0", args: { invoice: 42 }, reply: { subject: stack.names.callbackSubject(natsReq.token) } });

      const forged = natsReq.token.replace(/[0-9a-f]{32}$/, "0".repeat(32));
      expect(await request(stack.names.callbackSubject(forged), { result: "paid" })).toMatchObject({ ok: false, code: "forbidden", error: "invalid callback token" });
      expect(await request(stack.names.callbackSubject("nonsense"), { result: "paid" })).toMatchObject({ ok: false, code: "not_found" });
      expect((await http("POST", `/callbacks/${forged}`, { result: "paid" }, null)).status).toBe(403);

      expect(await request(natsReq.reply.subject, { result: { paid: true, ref: "tx-1" } })).toMatchObject({ ok: true, event: "ToolCallCompleted" });
      expect(await request(natsReq.reply.subject, { result: "paid again" })).toMatchObject({ ok: false, code: "conflict" });
      // The callback URL needs no bearer token: the callback token is its credential.
      expect(await http("POST", `/callbacks/${httpReq.token}`, { error: "card declined" }, null)).toMatchObject({ status: 200, body: { event: "ToolCallFailed" } });
      expect((await http("POST", `/callbacks/${httpReq.token}`, { result: "ok" }, null)).status).toBe(409);

      expect((await until(viaNats, "Completed")).lastToolResult).toBe('{"paid":true,"ref":"tx-1"}');
      expect((await until(viaHttp, "Completed")).lastToolResult).toBe("error: card declined");
      const events = await stack.client.events(viaNats);
      expect(events.filter((e) => e.type === "ToolCallCompleted" || e.type === "ToolCallFailed")).toHaveLength(1);
    });
  });

  describe("deadlines", () => {
    it("rejects an approval and fails a question nobody answers in time, and the agent carries on", async () => {
      const runId = await start("hurry");
      const waiting = await stack.client.waitForRun(runId, {
        until: (v) => v.turn.phase === "tools" && v.turn.calls.every((c) => c.status.startsWith("awaiting")),
      });
      const calls = waiting.turn.phase === "tools" ? waiting.turn.calls : [];
      expect(calls.map((c) => [c.status, c.deadline?.onTimeout])).toEqual([
        ["awaitingApproval", "reject"],
        ["awaitingHuman", "fail"],
      ]);

      const done = await until(runId, "Completed", 10_000);
      expect(done.output).toBe("gave up waiting");
      const fired = (await stack.client.events(runId)).filter((e) => e.type === "TimerFired");
      expect(fired.map((e) => e.data)).toEqual([
        expect.objectContaining({ callId: "s1c0", outcome: "rejected", result: expect.stringMatching(/^The tool call was not approved or rejected by .* and did not run\.$/) }),
        expect.objectContaining({ callId: "s1c1", outcome: "failed", result: expect.stringMatching(/^timed out: not answered by a human by /) }),
      ]);
      for (const e of fired) expect(e.at).toBeGreaterThanOrEqual(e.data.dueAt);
      await eventually(async () => (await stack.client.listWaits()).every((w) => w.runId !== runId), 5000, "the waits to be cleared");
    });
  });

  describe("sleep_until", () => {
    it("wakes at once for a time in the past, and about on time for one 2 s ahead", async () => {
      const past = new Date(Date.now() - 60_000).toISOString();
      const pastRun = await startSleeper(stack, past);
      const soon = new Date(Date.now() + 2000).toISOString();
      const soonRun = await startSleeper(stack, soon);

      const pastDone = await until(pastRun, "Completed", 10_000);
      expect(pastDone.lastToolResult).toContain(`slept until ${past}`);
      await until(soonRun, "Sleeping", 5000);
      const soonDone = await until(soonRun, "Completed", 10_000);
      const fired = (await stack.client.events(soonRun)).find((e) => e.type === "TimerFired")!;
      expect(fired.at).toBeGreaterThanOrEqual(Date.parse(soon));
      expect(fired.at - Date.parse(soon)).toBeLessThan(1000);
      expect(soonDone.status).toBe("Completed");
    });
  });
});

/** Starts a run of the sleeper agent, whose model asks to sleep until `time`. */
export async function startSleeper(stack: Stack, time: string): Promise<string> {
  const { runId } = await stack.client.startRun({ task: "nap", message: `sleep until ${time}` });
  return runId;
}
