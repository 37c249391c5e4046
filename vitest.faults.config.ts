import { defineConfig } from "vitest/config";

// The fault suite (`npm run test:faults`): the pipeline against a PostgreSQL cluster of its own
// that it crashes, freezes and restarts, a spool on a full disk, and a Kiln process killed with
// SIGKILL. Not part of `npm test`; see docs/concepts/pipeline.md ("What the fault suite proves").
const conditions = ["@kiln/source"];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    name: "faults",
    include: ["faults/**/*.test.ts"],
    // One scenario at a time: each owns a server and the machine's two cores.
    fileParallelism: false,
    reporters: ["default", "./vitest.summary-reporter.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
