/**
 * Writes or checks the API report of every public entry point of every package: one
 * `packages/<name>/api/<entry>.api.md` per `exports` subpath, made by api-extractor from the
 * built declarations. `npm test` runs it in check mode, so a change of the public surface fails
 * until the report is updated (`npm run api:update`) and the change shows in review.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Extractor, ExtractorConfig, ExtractorLogLevel } from "@microsoft/api-extractor";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const update = process.argv.includes("--update");
const temp = mkdtempSync(path.join(tmpdir(), "kiln-api-"));

interface ExportTarget {
  readonly import?: { readonly types?: string };
}

let failures = 0;
try {
  for (const name of readdirSync(path.join(root, "packages")).sort()) {
    const packageFolder = path.join(root, "packages", name);
    const packageJson = path.join(packageFolder, "package.json");
    const manifest = JSON.parse(readFileSync(packageJson, "utf8")) as {
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
