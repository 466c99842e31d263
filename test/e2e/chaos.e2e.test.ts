import { describe, expect, it } from "vitest";
import { assertChaosHeld, formatReport, runChaos } from "../chaos/src/chaos.js";
import { natsUrl } from "../support/nats.js";

const RUNS = 40;

describe("chaos", () => {
  it("completes every run exactly once while services are killed -9 and restarted every few hundred ms", async () => {
    const report = await runChaos({ natsUrl: natsUrl(), runs: RUNS, chaosMs: 8_000, killEveryMs: [200, 500], settleTimeoutMs: 40_000 });
    process.stdout.write(`${formatReport(report)}\n`);
    assertChaosHeld(report, RUNS);
    expect(report.kills).toBeGreaterThan(10);
  }, 150_000);

  it("does so, views whole, with schedulers that project the views and no projector (SC_SCHEDULER_PROJECTS)", async () => {
    const report = await runChaos({ natsUrl: natsUrl(), runs: RUNS, chaosMs: 8_000, killEveryMs: [200, 500], settleTimeoutMs: 40_000, schedulerProjects: true });
    process.stdout.write(`${formatReport(report)}\n`);
    assertChaosHeld(report, RUNS);
    expect(report.kills).toBeGreaterThan(10);
    expect(report.killsByService.projector).toBeUndefined();
  }, 150_000);
});
