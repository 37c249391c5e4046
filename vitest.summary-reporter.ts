import { relative } from "node:path";
import type { Reporter, TestCase, TestModule } from "vitest/node";

/** The part of a test or suite name that says what a skipped test needs: `(needs ...)`. */
const NEEDS = /\((needs [^)]*)\)/;

/**
 * After vitest's own report, prints one line per group of skipped tests with the reason and how
 * to enable them (taken from the `(needs ...)` part of the test or suite name, which every
 * conditional skip in this repository carries), then one plain closing line,
 * `Tests: N passed, N failed, N skipped`, so CI logs end with a count any tool can read. Before
 * that, the slowest test files (import plus tests and hooks, seconds), so a CI log shows where the
 * suite's time goes (docs/adr/0044-test-files-share-module-cache.md).
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: readonly TestModule[]): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const skippedGroups = new Map<string, number>();
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else {
          skipped++;
          const key = `${module.project.name}: ${skipReason(test)}`;
          skippedGroups.set(key, (skippedGroups.get(key) ?? 0) + 1);
        }
      }
    }
    const lines = [...skippedGroups].map(([group, count]) => `skipped ${count} in ${group}\n`);
    process.stdout.write(
      `\n${slowest(testModules).join("")}${lines.join("")}Tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`,
    );
  }
}

/** How many of the slowest test files the summary names. */
const SLOWEST = 30;

/** One line per slowest test file: `slow 52.1 s plc-opcua: packages/plc-opcua/test/x.test.ts`. */
function slowest(testModules: readonly TestModule[]): string[] {
  const timed = testModules.map((module) => {
    const { collectDuration, duration } = module.diagnostic();
    return { module, seconds: (collectDuration + duration) / 1000 };
  });
  timed.sort((a, b) => b.seconds - a.seconds);
  return timed
    .slice(0, SLOWEST)
    .map(
      ({ module, seconds }) =>
        `slow ${seconds.toFixed(1)} s ${module.project.name}: ${relative(process.cwd(), module.moduleId)}\n`,
    );
}

/** The `(needs ...)` reason of a skipped test, from its own name or its nearest suite's. */
function skipReason(test: TestCase): string {
  const own = NEEDS.exec(test.name)?.[1];
  if (own !== undefined) return own;
  let parent: TestCase["parent"] | undefined = test.parent;
  while (parent !== undefined && parent.type === "suite") {
    const reason = NEEDS.exec(parent.name)?.[1];
    if (reason !== undefined) return reason;
    parent = parent.parent;
  }
  return `no reason given (${test.fullName}); name the need in the test: "(needs ...)"`;
}
