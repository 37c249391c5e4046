import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.base";

// "@kiln/core" and its subpaths stay external: a source file that imports a type from another
// entry by package name (ADR 0027: each exported name has one home) keeps that import in the
// declarations, so each entry's API report names the home instead of bundling a second copy.
// `@internal` declarations are stripped from the declarations.
export default defineConfig(
  packageBuild(
    {
      index: "src/index.ts",
      testing: "src/testing/index.ts",
      "driver-kit": "src/driver-kit/index.ts",
      advanced: "src/advanced/index.ts",
    },
    { external: [/^@kiln\/core(\/|$)/], dts: { compilerOptions: { stripInternal: true } } },
  ),
);
