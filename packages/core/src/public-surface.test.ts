/**
 * Keeps @kiln/core's public surface from creeping back (ADR 0027). Reads the committed API
 * reports, which `npm test` checks against the built declarations (scripts/api-report.ts), so
 * the counts are those of the published entry points.
 */
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";

/**
 * Most names (types and values) the main entry may export. Lower it when the surface shrinks;
 * never raise it to make room: give the new name its one home instead (a plugin-only name goes
 * to "./driver-kit", test tooling to "./testing", machine-model authoring, container overrides and
 * the raw parts behind `system.unchecked` to "./advanced"; a variant a host only narrows by its
 * discriminant is a member of its union, not a name (ADR 0027). Issue #11 asks for about 120.
 */
const MAIN_ENTRY_CEILING = 123;

function report(entry: "index" | "driver-kit" | "testing" | "advanced"): string {
  return readFileSync(fileURLToPath(new URL(`../api/${entry}.api.md`, import.meta.url)), "utf8");
}

/** The names an API report says its entry exports: one `export` declaration or re-export line each. */
export function exportedNames(apiReport: string): string[] {
  const names: string[] = [];
  for (const line of apiReport.split("\n")) {
    const declared =
      /^export (?:declare )?(?:abstract )?(?:class|interface|type|function|const|enum|namespace) (\w+)/.exec(line);
    if (declared?.[1] !== undefined) names.push(declared[1]);
    const reexported = /^export \{ ?(\w+)(?: as (\w+))? ?\}/.exec(line);
    if (reexported?.[1] !== undefined) names.push(reexported[2] ?? reexported[1]);
  }
  return names;
}

describe("the public surface of @kiln/core", () => {
  test(`the main entry exports at most ${MAIN_ENTRY_CEILING} names`, () => {
    const names = exportedNames(report("index"));
    expect(names.length).toBeGreaterThan(50); // the report was read and parsed
    expect(names.length).toBeLessThanOrEqual(MAIN_ENTRY_CEILING);
  });

  test("counting finds declared and re-exported names, and only those", () => {
    const sample = [
      "export class KilnError extends Error {",
      "export interface Tag {",
      "export type TagValue = number | string;",
      "export function defineTags(): void;",
      "export const GOOD: Quality;",
      "export { Metrics }",
      "    export interface NotTopLevel {",
      "// export interface Commented {",
    ].join("\n");
    expect(exportedNames(sample)).toEqual(["KilnError", "Tag", "TagValue", "defineTags", "GOOD", "Metrics"]);
  });

  test("no entry of any package names a type it does not export (ae-forgotten-export)", () => {
    const packages = fileURLToPath(new URL("../../", import.meta.url));
    const reports = readdirSync(packages).flatMap((name) =>
      readdirSync(`${packages}${name}/api`).map((file) => `${packages}${name}/api/${file}`),
    );
    expect(reports.length).toBeGreaterThanOrEqual(8); // core's three entries and the adapters' own
    for (const file of reports) expect(readFileSync(file, "utf8"), file).not.toContain("ae-forgotten-export");
  });

  test("test tooling has one home: nothing the testing entry exports is also in the main or driver-kit entry", () => {
    const testing = new Set(exportedNames(report("testing")));
    const elsewhere = [...exportedNames(report("index")), ...exportedNames(report("driver-kit"))];
    expect(elsewhere.filter((name) => testing.has(name))).toEqual([]);
  });

  test("advanced integration has one home: nothing the advanced entry exports is in another entry", () => {
    const advanced = exportedNames(report("advanced"));
    expect(advanced).toContain("StateMachine"); // the report was read and parsed
    const elsewhere = new Set(
      ["index", "driver-kit", "testing"].flatMap((entry) => exportedNames(report(entry as "index"))),
    );
    expect(advanced.filter((name) => elsewhere.has(name))).toEqual([]);
  });
});
