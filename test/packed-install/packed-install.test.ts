import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";

// The packages as a service developer gets them: packed by npm, installed from the tarballs into
// a project outside the monorepo, compiled by TypeScript as ESM (nodenext), CommonJS and node10
// resolution, and run against the Modbus simulator with the embedded PostgreSQL store.
const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, "..", "..");
const packageNames = (await readdir(path.join(root, "packages"))).sort();
const built = packageNames.every((name) => existsSync(path.join(root, "packages", name, "dist")));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");

let workDir: string | undefined;
afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe.skipIf(!built)("the packed packages installed into a project of its own (needs `npm run build`)", () => {
  test("install from the tarballs, type-check as ESM, CommonJS and node10, and run", { timeout: 240_000 }, async () => {
    workDir = await mkdtemp(path.join(tmpdir(), "kiln-packed-"));
    const tarballs = path.join(workDir, "tarballs");
    const app = path.join(workDir, "app");
    await mkdir(tarballs);
    await mkdir(app);
    const dependencies: Record<string, string> = {};
    for (const name of packageNames) {
      const { stdout } = await run(npm, ["pack", "--json", "--pack-destination", tarballs], {
        cwd: path.join(root, "packages", name),
      });
      const [packed] = JSON.parse(stdout) as [{ name: string; filename: string }];
      dependencies[packed.name] = `file:${path.join(tarballs, packed.filename)}`;
    }
    await writeFile(
      path.join(app, "package.json"),
      JSON.stringify({ name: "kiln-packed-consumer", private: true, type: "module", dependencies }, null, 2),
    );
    // Each adapter peer-depends on @kiln/core; the core tarball must satisfy it, with no registry lookup of @kiln/*.
    await run(npm, ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd: app,
      maxBuffer: 16 * 1024 * 1024,
    });

    for (const file of ["consumer.mts", "consumer.cts", "consumer-node10.ts"]) {
      await copyFile(path.join(here, "fixtures", file), path.join(app, file));
    }
    const common = {
      target: "es2022",
      lib: ["es2023", "esnext.disposable"],
      strict: true,
      skipLibCheck: true,
      types: ["node"],
      typeRoots: [path.join(root, "node_modules", "@types")],
    };
    await writeFile(
      path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { ...common, module: "nodenext", moduleResolution: "nodenext", outDir: "out" },
        files: ["consumer.mts", "consumer.cts"],
      }),
    );
    await writeFile(
      path.join(app, "tsconfig.node10.json"),
      JSON.stringify({
        compilerOptions: { ...common, module: "commonjs", moduleResolution: "node", noEmit: true },
        files: ["consumer-node10.ts"],
      }),
    );
    await run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: app });
    await run(process.execPath, [tsc, "-p", "tsconfig.node10.json"], { cwd: app });

    for (const output of ["consumer.mjs", "consumer.cjs"]) {
      const { stdout } = await run(process.execPath, [path.join(app, "out", output)], { cwd: app, timeout: 60_000 });
      // Libraries may print lines of their own; the consumer marks its result line.
      const result = stdout.split("\n").find((line) => line.startsWith("RESULT "));
      expect(result, `${output} printed no RESULT line:\n${stdout}`).toBeDefined();
      expect(JSON.parse(result!.slice("RESULT ".length)), output).toEqual({
        value: 4.5,
        severity: "good",
        isKilnError: true,
        opcua: "function",
        opcuaServer: "function",
        sparkplug: 1.5,
      });
    }
  });
});
