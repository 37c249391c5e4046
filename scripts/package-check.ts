/**
 * Checks every package as it would be published: `publint` (package.json fields and files) and
 * `@arethetypeswrong/cli` (types resolve for CommonJS and ESM hosts under node10, node16 and
 * bundler resolution) on the packed tarball. Run by `npm test` after the build.
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name: string): string => path.join(root, "node_modules", ".bin", name);

/** One check of one package: its problems as text, or undefined when it is clean. */
async function check(name: string, tool: string, args: readonly string[]): Promise<string | undefined> {
  try {
    await run(bin(tool), [...args], { cwd: path.join(root, "packages", name) });
    return undefined;
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    return `${tool} found problems in packages/${name}:\n${stdout}${stderr}`;
  }
}

// Each check packs or reads one package on its own: as many at once as the machine has cores.
const checks = readdirSync(path.join(root, "packages"))
  .sort()
  .flatMap((name) =>
    (
      [
        ["publint", ["--strict"]],
        ["attw", ["--pack", ".", "--format", "table-flipped"]],
      ] as const
    ).map(
      ([tool, args]) =>
        () =>
          check(name, tool, args),
    ),
  );
const problems: string[] = [];
await Promise.all(
  Array.from({ length: Math.min(availableParallelism(), checks.length) }, async () => {
    for (let next = checks.shift(); next !== undefined; next = checks.shift()) {
      const problem = await next();
      if (problem !== undefined) problems.push(problem);
    }
  }),
);
for (const problem of problems) console.error(problem);
if (problems.length > 0) process.exit(1);
console.log("publint and attw: every package is clean.");
