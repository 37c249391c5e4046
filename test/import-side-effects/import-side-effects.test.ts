import { execFile } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";

// Importing a Kiln entry point must print nothing and change no global beyond the documented
// list (docs/adr/0017-composition-without-a-container-library.md): each package says
// "sideEffects": false. Each import runs in a fresh Node.js process, on the built packages.
const run = promisify(execFile);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Globals zod 4 (a peer dependency of @kiln/core) defines when it is first imported. */
const ALLOWED_GLOBALS = ["__zod_globalConfig", "__zod_globalRegistry"];

const probe = `
const globalsBefore = new Set(Object.getOwnPropertyNames(globalThis));
const reflectBefore = new Set(Reflect.ownKeys(Reflect));
await import(process.argv[1]);
process.stdout.write("\\n" + JSON.stringify({
  globals: Object.getOwnPropertyNames(globalThis).filter((name) => !globalsBefore.has(name)),
  reflect: Reflect.ownKeys(Reflect).filter((key) => !reflectBefore.has(key)).map(String),
}));
`;

const entries = readdirSync(path.join(root, "packages"))
  .sort()
  .flatMap((name) => {
    const manifest = JSON.parse(readFileSync(path.join(root, "packages", name, "package.json"), "utf8")) as {
      name: string;
      exports: Record<string, unknown>;
    };
    return Object.keys(manifest.exports)
      .filter((subpath) => subpath !== "./package.json")
      .map((subpath) => ({ folder: name, specifier: path.posix.join(manifest.name, subpath) }));
  });
const built = readdirSync(path.join(root, "packages")).every((name) =>
  existsSync(path.join(root, "packages", name, "dist")),
);

describe.skipIf(!built)("importing a Kiln entry point has no side effects (needs `npm run build`)", () => {
  test.each(entries)("$specifier prints nothing and adds no global", async ({ specifier }) => {
    const { stdout, stderr } = await run(process.execPath, ["--input-type=module", "-e", probe, specifier], {
      cwd: root,
      timeout: 30_000,
    });
    const [printed, report] = [stdout.slice(0, stdout.lastIndexOf("\n")), stdout.slice(stdout.lastIndexOf("\n") + 1)];
    expect(printed + stderr).toBe("");
    const { globals, reflect } = JSON.parse(report) as { globals: string[]; reflect: string[] };
    expect(reflect).toEqual([]);
    expect(globals.filter((name) => !ALLOWED_GLOBALS.includes(name))).toEqual([]);
  });
});

if (!built) console.log("import side-effect test skipped: run `npm run build` first (npm test does)");
