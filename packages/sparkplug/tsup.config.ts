import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.base";

// "@kiln/sparkplug" stays external: the testing entry imports the main entry's types by package
// name (ADR 0027: each exported name has one home), so its declarations name that home.
export default defineConfig(
  packageBuild(
    { index: "src/index.ts", testing: "src/testing/index.ts" },
    { external: [/^@kiln\/sparkplug(\/|$)/], dts: { compilerOptions: { stripInternal: true } } },
  ),
);
