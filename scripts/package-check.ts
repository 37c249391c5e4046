/**
 * Checks every package as it would be published: `publint` (package.json fields and files) and
 * `@arethetypeswrong/cli` (types resolve for CommonJS and ESM hosts under node10, node16 and
 * bundler resolution) on the packed tarball. Run by `npm test` after the build.
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name: string): string => path.join(root, "node_modules", ".bin", name);

let failures = 0;
for (const name of readdirSync(path.join(root, "packages")).sort()) {
  const folder = path.join(root, "packages", name);
  for (const [tool, args] of [
    ["publint", ["--strict"]],
    ["attw", ["--pack", ".", "--format", "table-flipped"]],
  ] as const) {
    try {
      await run(bin(tool), [...args], { cwd: folder });
    } catch (error) {
      failures++;
      const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
      console.error(`${tool} found problems in packages/${name}:\n${stdout}${stderr}`);
    }
  }
}
if (failures > 0) process.exit(1);
console.log("publint and attw: every package is clean.");
