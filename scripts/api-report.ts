/**
 * Writes or checks the API report of every public entry point of every package: one
 * `packages/<name>/api/<entry>.api.md` per `exports` subpath, made by api-extractor from the
 * built declarations. `npm test` runs it in check mode, so a change of the public surface fails
 * until the report is updated (`npm run api:update`) and the change shows in review. A report
 * that carries an `ae-forgotten-export` warning fails in both modes: an entry's signature names
 * a type that entry does not export, so a user could not name it (export it, or stop exposing it).
 * Package names after the flags limit the run, e.g. `node --import tsx scripts/api-report.ts --update core`.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Extractor, ExtractorConfig, ExtractorLogLevel } from "@microsoft/api-extractor";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const update = process.argv.includes("--update");
const only = process.argv.slice(2).filter((argument) => !argument.startsWith("--"));
const temp = mkdtempSync(path.join(tmpdir(), "kiln-api-"));

interface ExportTarget {
  readonly import?: { readonly types?: string };
}

/** The package's own entry points, each mapped to its declarations under node_modules. */
function selfPaths(name: string, exports: Record<string, ExportTarget | string>): Record<string, string[]> {
  const paths: Record<string, string[]> = {};
  for (const [subpath, target] of Object.entries(exports)) {
    const types = typeof target === "string" ? undefined : target.import?.types;
    if (types !== undefined) paths[`${name}${subpath.slice(1)}`] = [path.join(root, "node_modules", name, types)];
  }
  return paths;
}

let failures = 0;
try {
  for (const name of readdirSync(path.join(root, "packages")).sort()) {
    if (only.length > 0 && !only.includes(name)) continue;
    const packageFolder = path.join(root, "packages", name);
    const packageJson = path.join(packageFolder, "package.json");
    const manifest = JSON.parse(readFileSync(packageJson, "utf8")) as {
      name: string;
      exports: Record<string, ExportTarget | string>;
    };
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      const types = typeof target === "string" ? undefined : target.import?.types;
      if (types === undefined) continue;
      const entry = subpath === "." ? "index" : subpath.slice(2);
      if (update) mkdirSync(path.join(packageFolder, "api"), { recursive: true });
      const config = ExtractorConfig.prepare({
        configObject: {
          projectFolder: packageFolder,
          mainEntryPointFilePath: path.join(packageFolder, types),
          compiler: {
            overrideTsconfig: {
              compilerOptions: {
                target: "es2022",
                lib: ["es2023", "esnext.disposable"],
                types: ["node"],
                module: "nodenext",
                moduleResolution: "nodenext",
                strict: true,
                skipLibCheck: true,
                // An entry that imports a type from another entry of its package by name
                // ("@kiln/core/driver-kit") reaches it through node_modules, not as a self-reference,
                // so api-extractor reports it as an import from that entry, the name's one home (ADR 0027).
                preserveSymlinks: true,
                paths: selfPaths(manifest.name, manifest.exports),
              },
            },
          },
          apiReport: {
            enabled: true,
            reportFolder: path.join(packageFolder, "api"),
            reportTempFolder: path.join(temp, name),
            reportFileName: entry,
          },
          docModel: { enabled: false },
          dtsRollup: { enabled: false },
          tsdocMetadata: { enabled: false },
          messages: {
            compilerMessageReporting: { default: { logLevel: ExtractorLogLevel.Warning } },
            extractorMessageReporting: {
              default: { logLevel: ExtractorLogLevel.Warning, addToApiReportFile: true },
              "ae-missing-release-tag": { logLevel: ExtractorLogLevel.None, addToApiReportFile: false },
              // Every exported symbol and member has TSDoc (STYLE.md): a missing one fails the check,
              // naming it, instead of sitting in the report with a d.ts line number that every
              // documentation change elsewhere moves.
              "ae-undocumented": { logLevel: ExtractorLogLevel.Error, addToApiReportFile: false },
              // tsup's declaration bundler hoists imports above an entry's @packageDocumentation comment.
              "ae-misplaced-package-tag": { logLevel: ExtractorLogLevel.None, addToApiReportFile: false },
            },
            tsdocMessageReporting: { default: { logLevel: ExtractorLogLevel.None, addToApiReportFile: false } },
          },
        },
        configObjectFullPath: undefined,
        packageJsonFullPath: packageJson,
      });
      const result = Extractor.invoke(config, {
        localBuild: update,
        showVerboseMessages: false,
        messageCallback: (message) => {
          // Findings go into the report itself; keep the console for what the report cannot hold.
          if (message.category !== "Compiler") message.handled = true;
          if (message.logLevel === ExtractorLogLevel.Error) console.error(message.text);
        },
      });
      const label = `${name}${subpath === "." ? "" : subpath.slice(1)}`;
      const report = path.join(update ? path.join(packageFolder, "api") : path.join(temp, name), `${entry}.api.md`);
      const forgotten = existsSync(report)
        ? [...readFileSync(report, "utf8").matchAll(/\(ae-forgotten-export\) The symbol "([^"]+)"/g)].map((m) => m[1])
        : [];
      if (forgotten.length > 0) {
        failures++;
        console.error(
          `@kiln/${label} names types it does not export (ae-forgotten-export): ${[...new Set(forgotten)].join(", ")}. ` +
            "Export what a user needs to name from this entry, or stop exposing it.",
        );
      }
      if (result.apiReportChanged && !update) {
        failures++;
        console.error(
          `API report of @kiln/${label} differs from packages/${name}/api/${entry}.api.md: ` +
            "the public surface changed. Review it, then run `npm run api:update` and commit the report.",
        );
      } else if (!result.succeeded && !result.apiReportChanged) {
        failures++;
        console.error(`api-extractor failed on @kiln/${label}`);
      }
    }
  }
} finally {
  rmSync(temp, { recursive: true, force: true });
}
if (failures > 0) process.exit(1);
console.log(update ? "API reports written." : "API reports match the public surface.");
