import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { CLI, ROOT, cli, eventually } from "../support/processes.js";
import { cleanupPrefix, natsUrl, uniquePrefix } from "../support/nats.js";
import { startStack, type Stack } from "../support/stack.js";

const dir = mkdtempSync(join(tmpdir(), "sc-cli-"));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const GOOD = `
llms:
  - name: mock
    provider: mock
    replies: [ { content: "hello back" } ]
agents:
  - { name: greeter, llm: mock }
tasks:
  - { name: greet, user_message: hello, agent: greeter }
`;

describe("the smallchain CLI", () => {
  let stack: Stack;
  const sc = (...args: string[]) => cli(["--prefix", stack.prefix, ...args]);

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack[Symbol.asyncDispose]();
  });

  it("refuses invalid YAML whole, naming the line, with exit code 2", async () => {
    const r = await sc("apply", "-f", file("syntax.yaml", "llms:\n  - name: a\n    provider: [mock\n"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/syntax\.yaml is invalid, nothing was applied/);
    expect(r.stderr).toMatch(/syntax\.yaml:\d+:/);
    expect(await stack.client.knownNames()).toMatchObject({ llm: [], agent: [], task: [] });
  });

  it("names the path and line of a bad field, and an unknown llm with the ones that exist; applies nothing", async () => {
    const r = await sc(
      "apply",
      "-f",
      file(
        "refs.yaml",
        `llms:
  - { name: mock, provider: mock, replies: [ { content: hi } ] }
agents:
  - name: assistant
    llm: gpt-5
    max_steps: ten
tasks:
  - { name: t, user_message: x, agent: nobody }
`,
      ),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("refs.yaml:6: agents[0] (assistant).max_steps:");
    const again = await sc("apply", "-f", file("refs2.yaml", "llms:\n  - { name: mock, provider: mock, replies: [ { content: hi } ] }\nagents:\n  - { name: assistant, llm: gpt-5 }\n"));
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('refs2.yaml:4: agents[0] (assistant).llm: agent "assistant": llm "gpt-5" not found in ');
    expect(again.stderr).toContain("refs2.yaml (llms: mock)");
    expect((await stack.client.knownNames()).llm).toEqual([]);
  });

  it("applies a file, runs a task with --wait and prints its answer; re-applying is a no-op", async () => {
    const path = file("good.yaml", GOOD);
    const first = await sc("apply", "-f", path);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain("llm/mock configured");
    const second = await sc("apply", "-f", path);
    expect(second.stdout).toContain("llm/mock unchanged");
    const run = await sc("run", "greet", "--wait");
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe("hello back");
    expect(run.stderr).toMatch(/RunCompleted/);
    const unknown = await sc("run", "nope");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('task "nope" not found in the applied config (tasks: greet)');
  });

  it("pages get runs, newest first", async () => {
    await sc("apply", "-f", file("good3.yaml", GOOD));
    const ids: string[] = [];
    for (const name of ["first", "second", "third"]) ids.push((await sc("run", "greet", "--name", name)).stdout.trim());
    await Promise.all(ids.map((id) => stack.client.waitForRun(id)));
    const page = await sc("get", "runs", "--limit", "2");
    const rows = page.stdout.trim().split("\n").slice(1);
    expect(rows).toHaveLength(2);
    expect(page.stderr).toMatch(/more: --offset 2/);
    const all = JSON.parse((await sc("get", "runs", "--limit", "0", "-o", "json")).stdout) as { runId: string; createdAt: number }[];
    expect(all.map((r) => r.createdAt)).toEqual([...all.map((r) => r.createdAt)].sort((a, b) => b - a));
    const next = await sc("get", "runs", "--limit", "2", "--offset", "2");
    expect(next.stdout).toContain(all[2]!.runId);
  });

  it("follows events live with get events --follow", async () => {
    await sc("apply", "-f", file("good2.yaml", GOOD));
    const child = spawn(process.execPath, [CLI, "--prefix", stack.prefix, "get", "events", "--follow"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      const started = await sc("run", "greet", "--message", "live one", "--name", "followed");
      const runId = started.stdout.trim();
      await eventually(() => out.includes(`${runId}  `) && /RunCompleted\s+"hello back"/.test(out.split(runId).slice(1).join(runId)), 15_000, "the followed run to complete");
      expect(out).toContain('"live one"');
    } finally {
      child.kill();
    }
  });
});

describe("run --wait with no projector running", () => {
  it("prints the answer from the run's own events, and its view as JSON", async () => {
    await using stack = await startStack(["scheduler", "llm-worker", "tool-worker"]);
    const sc = (...args: string[]) => cli(["--prefix", stack.prefix, ...args]);
    expect((await sc("apply", "-f", file("noproj.yaml", GOOD))).code).toBe(0);
    const run = await sc("run", "greet", "--wait");
    expect(run.stderr).toMatch(/RunCompleted/);
    expect(run.stdout.trim()).toBe("hello back");
    expect(run.code).toBe(0);
    const json = await sc("run", "greet", "--name", "as-json", "--wait", "-o", "json");
    expect(json.code).toBe(0);
    const view = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(view).toMatchObject({ name: "as-json", status: "Completed", output: "hello back", agentName: "greeter" });
    // The shape of a stored view: no agent snapshot, no per-step scratch fields.
    expect(view).not.toHaveProperty("agent");
    expect(view).not.toHaveProperty("newMessages");
    // Nothing wrote a view: the answer above came from the events alone.
    expect(await stack.client.getRun(String(view.runId))).toBeUndefined();
  });
});

describe("smallchain dev (the README's first command)", () => {
  it("runs the example calculator end to end in one process, prints the answer and exits 0; a failing run exits 3", async () => {
    const prefix = uniquePrefix("dev");
    const nc = await connect({ servers: natsUrl() });
    try {
      const ok = await cli(["--prefix", prefix, "dev", "--apply", `${ROOT}examples/calculator.yaml`, "--exit-when-done", "--quiet"]);
      expect(ok.stderr).toContain("applied");
      expect(ok.stdout).toMatch(/run my first run \(\w+\): Completed\n.*= 15/);
      expect(ok.code).toBe(0);
      const failing = file(
        "dev-fails.yaml",
        `llms:\n  - { name: looping, provider: mock, replies: [ { tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ] } ] }\nagents:\n  - { name: a, llm: looping, tools: [ add ], max_steps: 1 }\ntools:\n  - { name: add, builtin: add }\ntasks:\n  - { name: t, user_message: hi, agent: a }\nruns:\n  - { name: doomed, task: t }\n`,
      );
      const bad = await cli(["--prefix", prefix, "dev", "--apply", failing, "--exit-when-done", "--quiet"]);
      expect(bad.stdout).toMatch(/run doomed \(\w+\): Failed\n.*max_steps \(1\) reached without a final answer/);
      expect(bad.code).toBe(3);
    } finally {
      await cleanupPrefix(nc, prefix);
      await nc.close();
    }
  });
});
