/**
 * `npm run bench -- <name> [<name>...]` runs bench/<name>.ts and prints one JSON object per
 * line. `npm run bench -- all` runs every benchmark. Each benchmark module exports
 * `run(): Promise<BenchResult | BenchResult[]>` and measures the raw library it wraps in the
 * same run, reporting `kiln`, `baseline` and `ratio`.
 */
import { readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

type BenchResult = Record<string, unknown>;

const here = dirname(fileURLToPath(import.meta.url));
const available = (await readdir(here))
  .filter((file) => file.endsWith(".ts") && !["run.ts", "harness.ts"].includes(file) && !file.startsWith("_"))
  .map((file) => file.slice(0, -3))
  .sort();

const requested = process.argv.slice(2).filter((argument) => !argument.startsWith("-"));
if (requested.length === 0) {
  console.error(`usage: npm run bench -- <name>... | all\navailable: ${available.join(", ")}`);
  process.exit(2);
}
const names = requested.includes("all") ? available : requested;
let failed = false;
for (const name of names) {
  if (!available.includes(name)) {
    console.error(`unknown benchmark "${name}"; available: ${available.join(", ")}`);
    failed = true;
    continue;
  }
  try {
    const module = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as {
      run(): Promise<BenchResult | BenchResult[]>;
    };
    const result = await module.run();
    for (const line of Array.isArray(result) ? result : [result]) console.log(JSON.stringify(line));
  } catch (error) {
    console.log(JSON.stringify({ name, error: error instanceof Error ? error.message : String(error) }));
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
