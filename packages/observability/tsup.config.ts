import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.base";

export default defineConfig(packageBuild({ prometheus: "src/prometheus.ts", opentelemetry: "src/opentelemetry.ts" }));
