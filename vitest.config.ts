import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests import workspace packages from source; spawned service processes run the built dist/ (npm test builds first).
export default defineConfig({
  resolve: {
    alias: {
      "@smallchain/shared": src("./packages/shared/src/index.ts"),
      "@smallchain/scheduler": src("./services/scheduler/src/index.ts"),
      "@smallchain/projector": src("./services/projector/src/index.ts"),
      "@smallchain/llm-worker": src("./services/llm-worker/src/index.ts"),
      "@smallchain/tool-worker": src("./services/tool-worker/src/index.ts"),
      "@smallchain/gateway": src("./services/gateway/src/index.ts"),
    },
  },
  test: {
    include: ["packages/**/src/**/*.test.ts", "services/**/src/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ["test/support/global-setup.ts"],
    // Every event and command Smallchain's code writes as typed is checked against its schema first (readers check
    // only its envelope): a writer that builds an invalid one fails the test that reaches it. Spawned services inherit it.
    env: { SC_CHECK_WRITES: "1" },
  },
});
