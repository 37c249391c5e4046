import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { installedSize } from "./installed-size";

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

/**
 * Installed size ceilings in MB (10^6 bytes) per package with everything it needs at run time,
 * about 10% over what was measured (docs/install-size.md); raise one only with a reason there.
 */
const INSTALLED_MB_CEILING: Record<string, number> = {
  "@kiln/core": 11,
  "@kiln/observability": 11.5,
  "@kiln/opcua-server": 68,
  "@kiln/plc-modbus": 16,
  "@kiln/plc-opcua": 38,
  "@kiln/sparkplug": 24,
  "@kiln/store-postgres": 12.5,
};

let workDir: string | undefined;

/** The JSON a fixture printed on its `RESULT ` line (libraries may print lines of their own). */
function resultOf(stdout: string, fixture: string): unknown {
  const line = stdout.split("\n").find((candidate) => candidate.startsWith("RESULT "));
  expect(line, `${fixture} printed no RESULT line:\n${stdout}`).toBeDefined();
  return JSON.parse(line!.slice("RESULT ".length));
}
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
    // One npm process packs every package (seven npm start-ups cost about 7 s under load); npm packs
    // each folder as it would from inside it.
    const { stdout: packOutput } = await run(
      npm,
      ["pack", "--json", "--pack-destination", tarballs, ...packageNames.map((name) => `./${name}`)],
      { cwd: path.join(root, "packages") },
    );
    const packed = JSON.parse(packOutput) as { name: string; filename: string }[];
    for (const { name, filename } of packed) dependencies[name] = `file:${path.join(tarballs, filename)}`;
    expect(packed.length, "one tarball per package").toBe(packageNames.length);
    await writeFile(
      path.join(app, "package.json"),
      JSON.stringify(
        {
          name: "kiln-packed-consumer",
          private: true,
          type: "module",
          dependencies: { ...dependencies, "@electric-sql/pglite": "^0.3.8" },
        },
        null,
        2,
      ),
    );
    // Each adapter peer-depends on @kiln/core; the core tarball must satisfy it, with no registry lookup of @kiln/*.
    await run(npm, ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd: app,
      maxBuffer: 16 * 1024 * 1024,
    });

    // Optional peers are not installed yet: the features that need them say what to install.
    // The service installs PGlite (the store's optional peer) for the embedded store the consumers run,
    // and @kiln/opcua-server brings node-opcua-server: hide both for one run, as in a service that
    // installs only the driver and a PostgreSQL server's store. Each feature that needs a missing
    // optional peer says what to install.
    const hidden = ["node-opcua-server", "@electric-sql/pglite"].map((name) => path.join(app, "node_modules", name));
    await Promise.all(hidden.map((dir) => rename(dir, `${dir}.hidden`)));
    await copyFile(path.join(here, "fixtures", "missing-peers.mjs"), path.join(app, "missing-peers.mjs"));
    const missing = await run(process.execPath, ["missing-peers.mjs"], { cwd: app, timeout: 60_000 }).finally(() =>
      Promise.all(hidden.map((dir) => rename(`${dir}.hidden`, dir))),
    );
    expect(resultOf(missing.stdout, "missing-peers.mjs")).toEqual({
      simulator: { code: "KILN_NOT_SUPPORTED", install: "node-opcua-server@2.182.2 node-opcua-nodesets@2.182.0" },
      store: { code: "KILN_NOT_SUPPORTED", install: "@electric-sql/pglite@^0.3.8" },
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
    // The node10 check and the ESM and CommonJS runs are independent: they overlap (each consumer
    // spends most of its time importing; the two ran 25 s one after the other).
    const node10 = run(process.execPath, [tsc, "-p", "tsconfig.node10.json"], { cwd: app });
    await run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: app });
    const outputs = ["consumer.mjs", "consumer.cjs"];
    const results = await Promise.all(
      outputs.map((output) => run(process.execPath, [path.join(app, "out", output)], { cwd: app, timeout: 60_000 })),
    );
    await node10;
    outputs.forEach((output, index) => {
      expect(resultOf(results[index]!.stdout, output), output).toEqual({
        value: 4.5,
        severity: "good",
        isKilnError: true,
        opcua: "function",
        opcuaServer: "function",
        sparkplug: 1.5,
      });
    });

    // What each package costs installed alone (docs/install-size.md); a ceiling per package keeps a
    // dependency change from pulling in a server or a database unnoticed.
    const sizes: Record<string, number> = {};
    for (const name of Object.keys(dependencies).sort()) {
      const { bytes, packages } = await installedSize(app, name);
      sizes[name] = Math.round(bytes / 1e5) / 10;
      console.log(`installed size: ${name} ${sizes[name]} MB in ${packages} packages`);
    }
    for (const [name, ceiling] of Object.entries(INSTALLED_MB_CEILING)) {
      expect(sizes[name], `${name} installed alone (MB)`).toBeLessThanOrEqual(ceiling);
    }
    expect(Object.keys(INSTALLED_MB_CEILING).sort()).toEqual(Object.keys(sizes).sort());
  });
});
