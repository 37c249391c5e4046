import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";

const run = promisify(execFile);
const main = fileURLToPath(new URL("../src/main.ts", import.meta.url));
const node = (args: string[]) =>
  run(process.execPath, ["--conditions=@kiln/source", "--import", "tsx", main, ...args], { timeout: 60_000 });

describe("the demo's command line", () => {
  test("--help and -h print the usage and exit 0 without running the reactor", async () => {
    for (const flag of ["--help", "-h"]) {
      const { stdout, stderr } = await node([flag]);
      expect(stdout).toMatch(/^Usage: npm run demo -- /);
      expect(stdout).toContain("--serve-port <port>");
      expect(stderr).toBe("");
    }
  });

  test("an unknown option prints why and the usage on stderr and exits 2", async () => {
    const failure = await node(["--no-such-option"]).then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toMatch(/Unknown option '--no-such-option'[\s\S]*Usage: npm run demo -- /);
  });
});
