import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runAldDemo } from "../src/ald-demo";
import { shortDemo } from "./support/short-demo";

/** Debian's `chromium` package; CI installs it before the tests. */
const CHROMIUM = "/usr/bin/chromium";

const run = promisify(execFile);
let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-ald-report-browser-"));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** Loads `file` in headless Chromium, runs its scripts, and returns the DOM it ends with. */
async function dumpDom(file: string): Promise<string> {
  const { stdout } = await run(
    CHROMIUM,
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      `--user-data-dir=${path.join(workDir, "chromium-profile")}`,
      "--dump-dom",
      pathToFileURL(file).href,
    ],
    { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 },
  );
  return stdout;
}

test.skipIf(!existsSync(CHROMIUM))(
  "the demo's report draws both trend charts in headless Chromium, gap included (needs Debian's chromium: apt-get install chromium)",
  async () => {
    const summary = await runAldDemo({ ...shortDemo, fault: true, outDir: path.join(workDir, "out") });
    const dom = await dumpDom(summary.reportFile);

    const body = /<body([^>]*)>/.exec(dom)?.[1] ?? "";
    // The page's own script measured the traces after layout: getTotalLength() > 0 and getBBox().width > 0.
    expect(body).toContain('data-charts="2"');
    expect(body).toContain('data-charts-drawn="2"');
    const lengths = /data-trace-lengths="([^"]*)"/.exec(body)?.[1]?.split(",").map(Number) ?? [];
    expect(lengths).toHaveLength(2);
    for (const length of lengths) expect(length).toBeGreaterThan(0);
    // The outage is drawn as a gap on the pressure chart.
    expect(dom).toContain('data-chart="pressure" data-gaps="1"');
  },
);
