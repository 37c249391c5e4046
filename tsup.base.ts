import type { Options } from "tsup";

/**
 * The one tsup configuration every package spreads. ESM and CommonJS output with
 * declarations; dependencies stay external. A later move to tsdown changes this file only.
 */
export function packageBuild(entry: Record<string, string>, overrides: Options = {}): Options {
  return {
    entry,
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    clean: true,
    target: "node20",
    platform: "node",
    splitting: true,
    treeshake: true,
    outDir: "dist",
    ...overrides,
  };
}
