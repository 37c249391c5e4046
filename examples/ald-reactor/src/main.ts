import path from "node:path";
import { KilnError } from "@kiln/core";
import { runAldDemo } from "./ald-demo";
import { formatAldSummary } from "./ald-summary";

// `npm run demo` runs from the repository root through npm, which sets INIT_CWD to the directory
// the command was typed in: the report goes to <that directory>/out/ald-run.html.
const baseDir = process.env.INIT_CWD ?? process.cwd();
const fault = process.argv.slice(2).includes("--fault");
const databaseUrl = process.env.DATABASE_URL;

console.log(
  `Kiln ALD demo: 30 cycles of Al2O3 on a simulated OPC UA PLC${fault ? ", with the PLC's server stopped and restarted mid-run" : ""}`,
);
try {
  const summary = await runAldDemo({
    fault,
    outDir: path.join(baseDir, "out"),
    ...(databaseUrl ? { databaseUrl } : {}),
    output: process.stdout,
    log: (line) => console.log(line),
  });
  console.log(`\n${formatAldSummary(summary)}\n`);
  console.log(`Report: ${path.relative(baseDir, summary.reportFile) || summary.reportFile}`);
  if (!summary.ok) {
    console.error("The run did not complete cleanly (see the lines marked ✗).");
    process.exitCode = 1;
  }
} catch (error) {
  console.error(`\nThe demo failed: ${KilnError.is(error) ? `${error.code}: ${error.message}` : String(error)}`);
  if (!KilnError.is(error) && error instanceof Error && error.stack) console.error(error.stack);
  process.exitCode = 1;
}
