/**
 * The bench's fake OpenAI server in a process of its own, so that its CPU is told apart from its clients' and it
 * shares no thread with the bench's observer or raw chain: `startFakeOpenAIProcess(steps)` answers `steps` calls
 * of the builtin add, then "done" (by the number of answers already in the request), as the bench's agent needs.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startFakeOpenAI, turnOf } from "../../test/support/fake-openai.js";

export type FakeOpenAIProcess = { url: string; pid: number | undefined; stop(): void };

export function startFakeOpenAIProcess(steps: number): Promise<FakeOpenAIProcess> {
  const child = fork(fileURLToPath(import.meta.url), ["--serve", String(steps)], { stdio: "inherit" });
  return new Promise((resolve, reject) => {
    child.once("message", (url) => resolve({ url: String(url), pid: child.pid, stop: () => child.disconnect() }));
    child.once("exit", (code) => reject(new Error(`the fake OpenAI server exited with ${code} before it listened`)));
  });
}

if (process.argv[2] === "--serve") {
  const steps = Number(process.argv[3]);
  const fake = await startFakeOpenAI((req) => (turnOf(req) < steps ? { toolCalls: [{ name: "add", arguments: { a: 1, b: 2 } }] } : { content: "done" }));
  process.send?.(fake.url);
  // The bench went (or let go of it): nothing else keeps this server alive.
  process.on("disconnect", () => process.exit(0));
}
