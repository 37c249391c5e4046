import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = join(here, "..");
const built = existsSync(join(packageRoot, "dist", "index.js"));
const expected = { tags: ["pressure"], isKilnError: true, signal: 3, clock: 5, backoff: 200, machine: "idle" };

// `npm test` builds before running tests; a bare `vitest` run without a build skips, saying why.
describe.skipIf(!built)("the built @kiln/core (needs `npm run build`)", () => {
  test("an ESM host imports it, its testing, driver-kit and advanced subpaths by name", async () => {
    const { stdout } = await run(process.execPath, [join(here, "fixtures", "esm-host.mjs")], { cwd: here });
    expect(JSON.parse(stdout)).toEqual(expected);
  });

  test("a CommonJS host requires it, its testing, driver-kit and advanced subpaths by name", async () => {
    const { stdout } = await run(process.execPath, [join(here, "fixtures", "cjs-host.cjs")], { cwd: here });
    expect(JSON.parse(stdout)).toEqual(expected);
  });

  test("every file the exports map names exists, with types for both formats", async () => {
    const manifest = JSON.parse(await readFile(join(packageRoot, "package.json"), "utf8")) as {
      exports: Record<string, string | Record<string, string | Record<string, string>>>;
    };
    const targets: string[] = [];
    for (const entry of Object.values(manifest.exports)) {
      if (typeof entry === "string") continue;
      for (const [condition, target] of Object.entries(entry)) {
        if (condition === "@kiln/source") continue;
        if (typeof target === "string") targets.push(target);
        else targets.push(...Object.values(target));
      }
    }
    expect(targets.filter((target) => target.endsWith(".d.cts"))).toHaveLength(4);
    for (const target of targets) expect(existsSync(join(packageRoot, target)), target).toBe(true);
  });
});
