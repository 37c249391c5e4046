import { execFile } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, expect, test } from "vitest";
import { extractBlocks, tsdocExamples } from "../../docs-check/code-samples";

// The first samples a newcomer copies — README.md, docs/getting-started.md, @kiln/core's README
// and the createControlSystem example of the API reference — extracted from the documents
// themselves (not copied here) and run as programs on the SimulatedPlc. Type-checking them
// (`npm run docs:check`) cannot tell that a sample prints `undefined`.
const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, "..", "..");
// Inside the repository, so that `@kiln/core` resolves to the workspace package.
const generated = path.join(here, ".generated");

afterAll(async () => {
  await rm(generated, { recursive: true, force: true });
});

/** Runs `code` as an ES module (with tsx, on the packages' TypeScript sources); its stdout. */
async function runSample(name: string, code: string): Promise<string> {
  await mkdir(generated, { recursive: true });
  const file = path.join(generated, `${name}.mts`);
  await writeFile(file, code);
  const { stdout } = await run(process.execPath, ["--conditions=@kiln/source", "--import", "tsx", file], {
    cwd: root,
    // a cold tsx start takes 1.5-3 s idle and several times that on a loaded 2-core machine
    timeout: 25_000,
  });
  return stdout;
}

async function firstBlock(markdown: string): Promise<string> {
  const [block] = extractBlocks(markdown, await readFile(path.join(root, markdown), "utf8"));
  if (!block) throw new Error(`${markdown} has no TypeScript block`);
  return block.code;
}

/** The printed sample of `tag`: a value, a source timestamp (ms since 1970) and good quality. */
function expectGoodSample(stdout: string, tag: string, value: RegExp = /-?\d+(\.\d+)?/): void {
  expect(stdout).toContain(`tag: '${tag}'`);
  expect(stdout).not.toContain("undefined");
  expect(stdout).toMatch(new RegExp(`value: ${value.source},`));
  const timestamp = /timestamp: (\d+)/.exec(stdout);
  expect(Number(timestamp?.[1])).toBeGreaterThan(Date.UTC(2020, 0, 1));
  expect(stdout).toMatch(/quality: \{ severity: 'good', code: 0 \}/);
}

test("README's first sample prints the pressure's value, timestamp and good quality", { timeout: 30_000 }, async () => {
  const stdout = await runSample("readme", await firstBlock("README.md"));
  expectGoodSample(stdout, "chamber.pressure", /[123](\.\d+)?/);
});

test("the getting-started guide's first program prints a good sample", { timeout: 30_000 }, async () => {
  const stdout = await runSample("getting-started", await firstBlock("docs/getting-started.md"));
  expectGoodSample(stdout, "chamber.pressure", /[123](\.\d+)?/);
});

test("@kiln/core's README sample prints a good sample and an ok health", { timeout: 30_000 }, async () => {
  const stdout = await runSample("core-readme", await firstBlock("packages/core/README.md"));
  expectGoodSample(stdout, "chamber.pressure");
  expect(stdout.trim().split("\n").at(-1)).toBe("ok");
});

test("the API reference example of createControlSystem prints a good sample", { timeout: 30_000 }, async () => {
  const source = await readFile(path.join(root, "packages/core/src/compose/create-control-system.ts"), "utf8");
  const [example] = tsdocExamples(source, "export function createControlSystem(");
  expect(example).toContain('from "@kiln/core"');
  const stdout = await runSample("create-control-system", example!);
  expectGoodSample(stdout, "chamber.pressure", /0/);
});

test(
  "@kiln/sparkplug's README edge node sample prints the DBIRTH with every tag's value",
  { timeout: 30_000 },
  async () => {
    // On this machine's mosquitto where installed, else the embedded aedes broker.
    const stdout = await runSample("sparkplug-readme", await firstBlock("packages/sparkplug/README.md"));
    expect(stdout).toContain("spBv1.0/plant-1/DBIRTH/line-3/ald-1");
    expect(stdout).toMatch(/'chamber\.pressure=-?\d+(\.\d+)?'/);
    expect(stdout).toContain("'Kiln/Machine State=idle'");
  },
);
