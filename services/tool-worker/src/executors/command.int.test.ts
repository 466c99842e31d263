import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { CommandExecutor } from "@smallchain/shared";
import { runCommand, type CommandContext } from "./command.js";

const ctx: CommandContext = { idempotencyKey: "idem-1", runId: "run-1", callId: "call-1" };

function spec(runtime: CommandExecutor["runtime"], script: string, overrides: Partial<CommandExecutor> = {}): CommandExecutor {
  return { runtime, script, timeout_ms: 5_000, max_output_bytes: 64 * 1024, env: [], ...overrides };
}

/** Alive and not a zombie waiting to be reaped. */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function eventually(check: () => boolean, ms = 1_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

describe("runCommand", () => {
  describe("runtimes", () => {
    it("runs bash with the arguments as JSON on stdin", async () => {
      const script = `read -r json; a=$(echo "$json" | sed 's/.*"a":\\([0-9]*\\).*/\\1/'); echo $((a * 2))`;
      expect(await runCommand(spec("bash", script), { a: 21 }, ctx)).toEqual({ ok: true, output: "42" });
    });

    it("runs node with the arguments as JSON on stdin", async () => {
      const script = `let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { const { a, b } = JSON.parse(s); console.log(a + b); });`;
      expect(await runCommand(spec("node", script), { a: 2, b: 3 }, ctx)).toEqual({ ok: true, output: "5" });
    });

    it("runs python with the arguments as JSON on stdin", async () => {
      const script = "import json, sys\nargs = json.load(sys.stdin)\nprint(args['a'] * args['b'])";
      expect(await runCommand(spec("python", script), { a: 6, b: 7 }, ctx)).toEqual({ ok: true, output: "42" });
    });

    it("does not source the user's ~/.bashrc", async () => {
      const home = mkdtempSync(join(tmpdir(), "smallchain-home-"));
      const realHome = process.env.HOME;
      writeFileSync(join(home, ".bashrc"), "echo sourced-bashrc\n");
      process.env.HOME = home;
      try {
        expect(await runCommand(spec("bash", "echo ok"), {}, ctx)).toEqual({ ok: true, output: "ok" });
      } finally {
        if (realHome === undefined) delete process.env.HOME;
        else process.env.HOME = realHome;
        rmSync(home, { recursive: true });
      }
    });

    it("trims exactly one trailing newline", async () => {
      expect(await runCommand(spec("bash", "printf 'a\\n\\n'"), {}, ctx)).toEqual({ ok: true, output: "a\n" });
    });
  });

  describe("arguments", () => {
    const marker = `/tmp/pwned-${randomUUID()}`;
    afterEach(() => expect(existsSync(marker)).toBe(false));

    it("passes arguments on stdin, never through a shell", async () => {
      const hostile = `"; touch ${marker}; echo $(id) \`touch ${marker}\` '$HOME`;
      const outcome = await runCommand(spec("bash", `read -r json; printf '%s' "$json"`), { text: hostile }, ctx);
      expect(outcome.ok).toBe(true);
      if (outcome.ok) expect(JSON.parse(outcome.output)).toEqual({ text: hostile });
    });

    it("hands shell metacharacters to a node script as literal text", async () => {
      const hostile = `$(touch ${marker}) && \`touch ${marker}\`; rm -rf "$HOME"`;
      const script = `let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => process.stdout.write(JSON.parse(s).text));`;
      expect(await runCommand(spec("node", script), { text: hostile }, ctx)).toEqual({ ok: true, output: hostile });
    });

    it("works when the script ignores stdin, even with arguments larger than a pipe buffer", async () => {
      const outcome = await runCommand(spec("bash", "echo hi"), { big: "z".repeat(1 << 20) }, ctx);
      expect(outcome).toEqual({ ok: true, output: "hi" });
    });
  });

  describe("environment", () => {
    const printEnv = "process.stdout.write(JSON.stringify(process.env))";
    const readEnv = async (allowed: string[]): Promise<Record<string, string>> => {
      const outcome = await runCommand(spec("node", printEnv, { env: allowed }), {}, ctx);
      if (!outcome.ok) throw new Error(outcome.error);
      return JSON.parse(outcome.output) as Record<string, string>;
    };

    afterEach(() => {
      delete process.env.SMALLCHAIN_TEST_SECRET;
    });

    it("hides the worker's own secrets (API keys, NATS credentials) from the script", async () => {
      const secrets = { OPENAI_API_KEY: "sk-test-secret", NATS_TOKEN: "nats-secret", NATS_PASS: "nats-pass", NATS_CREDS: "/secret.creds" };
      const saved = Object.fromEntries(Object.keys(secrets).map((k) => [k, process.env[k]]));
      Object.assign(process.env, secrets);
      try {
        const env = await readEnv([]);
        expect(Object.keys(secrets).filter((k) => k in env)).toEqual([]);
        expect(JSON.stringify(env)).not.toMatch(/secret|nats-pass/);
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }
    });

    it("scrubs everything but the basics and the call's identifiers", async () => {
      process.env.SMALLCHAIN_TEST_SECRET = "hunter2";
      const env = await readEnv([]);
      expect(env.SMALLCHAIN_TEST_SECRET).toBeUndefined();
      expect(env).toMatchObject({ SMALLCHAIN_IDEMPOTENCY_KEY: "idem-1", SMALLCHAIN_RUN_ID: "run-1", SMALLCHAIN_CALL_ID: "call-1" });
      const allowed = ["PATH", "HOME", "LANG", "TZ", "SMALLCHAIN_IDEMPOTENCY_KEY", "SMALLCHAIN_RUN_ID", "SMALLCHAIN_CALL_ID"];
      expect(Object.keys(env).filter((name) => !allowed.includes(name))).toEqual([]);
    });

    it("passes through variables the tool allow-lists", async () => {
      process.env.SMALLCHAIN_TEST_SECRET = "hunter2";
      const env = await readEnv(["SMALLCHAIN_TEST_SECRET", "SMALLCHAIN_TEST_UNSET"]);
      expect(env.SMALLCHAIN_TEST_SECRET).toBe("hunter2");
      expect("SMALLCHAIN_TEST_UNSET" in env).toBe(false);
    });
  });

  describe("limits", () => {
    it("kills a script that runs past its timeout", async () => {
      const started = Date.now();
      const outcome = await runCommand(spec("bash", "echo starting >&2; sleep 30", { timeout_ms: 300 }), {}, ctx);
      expect(outcome).toEqual({ ok: false, error: "timed out after 300 ms: starting" });
      expect(Date.now() - started).toBeLessThan(1_500);
    });

    it("kills the script's background children along with it on timeout", async () => {
      const started = Date.now();
      const outcome = await runCommand(spec("bash", "sleep 30 & echo $! >&2; wait", { timeout_ms: 300 }), {}, ctx);
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(outcome.ok).toBe(false);
      const grandchild = Number(outcome.ok ? NaN : /timed out after 300 ms: (\d+)$/.exec(outcome.error)?.[1]);
      expect(grandchild).toBeGreaterThan(0);
      expect(await eventually(() => !isRunning(grandchild))).toBe(true);
    });

    it("returns when the script exits and kills what it left running in the background", async () => {
      const started = Date.now();
      const outcome = await runCommand(spec("bash", "sleep 30 & echo $!"), {}, ctx);
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(outcome.ok).toBe(true);
      const leftover = Number(outcome.ok ? outcome.output : NaN);
      expect(await eventually(() => !isRunning(leftover))).toBe(true);
    });

    it("stops the script when the call is cancelled", async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const started = Date.now();
      const outcome = await runCommand(spec("bash", "sleep 30"), {}, { ...ctx, signal: controller.signal });
      expect(outcome).toEqual({ ok: false, error: "cancelled" });
      expect(Date.now() - started).toBeLessThan(1_000);
    });

    it("does not start a script for a call that is already cancelled", async () => {
      const marker = `/tmp/started-${randomUUID()}`;
      const outcome = await runCommand(spec("bash", `touch ${marker}`), {}, { ...ctx, signal: AbortSignal.abort() });
      expect(outcome).toEqual({ ok: false, error: "cancelled" });
      expect(existsSync(marker)).toBe(false);
    });

    it("truncates output beyond the cap and keeps draining so the script can finish", async () => {
      const script = `process.stdout.write("x".repeat(1 << 20)); console.error("done")`;
      const outcome = await runCommand(spec("node", script, { max_output_bytes: 1000 }), {}, ctx);
      expect(outcome).toEqual({ ok: true, output: `${"x".repeat(1000)}\n[output truncated at 1000 bytes]` });
    });

    it("never cuts a multi-byte character in half", async () => {
      const outcome = await runCommand(spec("bash", "printf 'aé'", { max_output_bytes: 2 }), {}, ctx);
      expect(outcome).toEqual({ ok: true, output: "a\n[output truncated at 2 bytes]" });
    });
  });

  describe("failures", () => {
    it("reports a non-zero exit code with the end of stderr", async () => {
      const outcome = await runCommand(spec("bash", "echo partial; echo oops >&2; exit 3"), {}, ctx);
      expect(outcome).toEqual({ ok: false, error: "exited with code 3: oops" });
    });

    it("falls back to stdout when a failing script wrote nothing to stderr", async () => {
      expect(await runCommand(spec("bash", "echo 'bad input'; exit 1"), {}, ctx)).toEqual({
        ok: false,
        error: "exited with code 1: bad input",
      });
    });

    it("keeps only the last 2 KB of stderr", async () => {
      const outcome = await runCommand(spec("node", `console.error("e".repeat(100000) + "END"); process.exit(2)`), {}, ctx);
      expect(outcome.ok).toBe(false);
      if (!outcome.ok) {
        expect(outcome.error).toMatch(/^exited with code 2: e+END$/);
        expect(outcome.error.length).toBeLessThan(2_100);
      }
    });

    it("reports a script killed by a signal", async () => {
      expect(await runCommand(spec("bash", "kill -TERM $$"), {}, ctx)).toEqual({ ok: false, error: "killed by signal SIGTERM" });
    });

    it("reports a runtime that cannot be started", async () => {
      const outcome = await runCommand(spec("python", "print(1)"), {}, ctx, { python: "python3-not-installed" });
      expect(outcome).toEqual({ ok: false, error: "cannot start python3-not-installed: executable not found (ENOENT)" });
    });

    it("reports a script the runtime cannot be given, without throwing", async () => {
      const outcome = await runCommand(spec("bash", "echo \0"), {}, ctx);
      expect(outcome.ok).toBe(false);
      if (!outcome.ok) expect(outcome.error).toMatch(/^cannot start bash: /);
    });

    it("reports arguments that cannot be serialised", async () => {
      const outcome = await runCommand(spec("bash", "cat"), { n: 1n }, ctx);
      expect(outcome.ok).toBe(false);
      if (!outcome.ok) expect(outcome.error).toMatch(/^arguments are not JSON: /);
    });
  });
});
