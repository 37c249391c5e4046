import type { Options } from "tsup";

/**
 * The one tsup configuration every package spreads. ESM and CommonJS output with
 * declarations; dependencies stay external. A later move to tsdown changes this file only.
 *
 * An adapter's declarations are built against `@kiln/core`'s built declarations (the build runs
 * core first), not its sources: without the `@kiln/source` condition the declaration build reads
 * core's `.d.ts` instead of type-checking all of core again, which halves each adapter's build
 * (the root `typecheck` checks the sources). Core passes its own `dts` options and keeps the
 * condition, because its entries import one another by package name (ADR 0027).
 */
export function packageBuild(entry: Record<string, string>, overrides: Options = {}): Options {
  return {
    entry,
    format: ["esm", "cjs"],
    dts: { compilerOptions: { customConditions: [] } },
    sourcemap: true,
    // Maps keep file and line for stack traces (`--enable-source-maps`) without a second copy of
    // every source in each map: that copy was most of what a package cost installed (docs/install-size.md).
    esbuildOptions(options) {
      options.sourcesContent = false;
    },
    clean: true,
    target: "node20",
    platform: "node",
    splitting: true,
    treeshake: true,
    outDir: "dist",
    ...overrides,
  };
}
