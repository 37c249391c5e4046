import { createServer } from "node:http";
import path from "node:path";
import { parseArgs } from "node:util";
import { KilnError, silentLogger, type Logger } from "@kiln/core";
import { PrometheusMetrics } from "@kiln/observability/prometheus";
import { routeNodeOpcuaLogs } from "@kiln/plc-opcua";
import { runAldDemo } from "./ald-demo";
import { formatAldSummary } from "./ald-summary";

const USAGE = `Usage: npm run demo -- [--fault] [--metrics] [--metrics-port <port>] [--serve [--serve-port <port>]
                        [--trust-client-certs-dir <dir>] [--allow-insecure]] [--help]
  --help, -h            print this and exit
  --fault               stop and restart the PLC's OPC UA server mid-run
  --serve               serve the reactor over OPC UA (the demo users are in the README); after the recipe
                        ends it keeps serving until Ctrl-C, then prints the summary and report
  --serve-port <port>   the port of --serve (default 4840)
  --trust-client-certs-dir <dir>  trust the client certificates (.pem, .der) in <dir>
  --allow-insecure      also offer SecurityPolicy None and anonymous (viewer) sessions
  --metrics             serve Prometheus metrics at http://127.0.0.1:<port>/metrics while the demo runs
  --metrics-port <port> the port of --metrics (default 9464)
Environment: DATABASE_URL=postgres://... logs to that PostgreSQL instead of an embedded PGlite.`;

let args: {
  help?: boolean;
  fault?: boolean;
  metrics?: boolean;
  "metrics-port"?: string;
  serve?: boolean;
  "serve-port"?: string;
  "trust-client-certs-dir"?: string;
  "allow-insecure"?: boolean;
};
try {
  args = parseArgs({
    options: {
      help: { type: "boolean", short: "h" },
      fault: { type: "boolean" },
      metrics: { type: "boolean" },
      "metrics-port": { type: "string" },
      serve: { type: "boolean" },
      "serve-port": { type: "string" },
      "trust-client-certs-dir": { type: "string" },
      "allow-insecure": { type: "boolean" },
    },
  }).values;
} catch (error) {
  console.error(`${(error as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const metricsPort = Number(args["metrics-port"] ?? 9464);
if (!Number.isInteger(metricsPort) || metricsPort < 1 || metricsPort > 65_535) {
  console.error(`--metrics-port must be a port number (1 to 65535), got ${args["metrics-port"]}\n\n${USAGE}`);
  process.exit(2);
}

const servePort = Number(args["serve-port"] ?? 4840);
if (!Number.isInteger(servePort) || servePort < 0 || servePort > 65_535) {
  console.error(`--serve-port must be a port number (0 to 65535), got ${args["serve-port"]}\n\n${USAGE}`);
  process.exit(2);
}

// node-opcua prints its own warnings to the console (a CVE flag hint, "Creating default certificate",
// reconnect traces). The demo's output is the demo's: node-opcua's errors go to stderr, the rest is
// dropped. A service would pass its own logger (pino...) instead.
const nodeOpcuaErrors: Logger = {
  ...silentLogger,
  error: (fields: Record<string, unknown> | string, message?: string) =>
    console.error(`node-opcua: ${typeof fields === "string" ? fields : (message ?? "")}`),
  child: () => nodeOpcuaErrors,
};
await routeNodeOpcuaLogs(nodeOpcuaErrors);

/** Resolves at Ctrl-C (or SIGTERM): how long the demo keeps serving after its recipe. */
function untilStopped(endpointUrl: string): Promise<void> {
  console.log(`\nThe recipe has ended; still serving at ${endpointUrl}. Press Ctrl-C to stop.`);
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}

// `npm run demo` runs from the repository root through npm, which sets INIT_CWD to the directory
// the command was typed in: the report goes to <that directory>/out/ald-run.html.
const baseDir = process.env.INIT_CWD ?? process.cwd();
const fault = args.fault === true;
const databaseUrl = process.env.DATABASE_URL;
const metrics = args.metrics ? new PrometheusMetrics({ labels: { machine: "ald-1" } }) : undefined;
const server =
  metrics &&
  createServer((request, response) => {
    if (request.url !== "/metrics") {
      response.statusCode = 404;
      response.end();
      return;
    }
    void metrics.registry.metrics().then((text) => {
      response.setHeader("Content-Type", metrics.registry.contentType);
      response.end(text);
    });
  }).listen(metricsPort, "127.0.0.1", () => console.log(`Metrics: http://127.0.0.1:${metricsPort}/metrics`));

console.log(
  `Kiln ALD demo: 30 cycles of Al2O3 on a simulated OPC UA PLC${fault ? ", with the PLC's server stopped and restarted mid-run" : ""}`,
);
try {
  const summary = await runAldDemo({
    fault,
    outDir: path.join(baseDir, "out"),
    ...(databaseUrl ? { databaseUrl } : {}),
    ...(metrics ? { metrics } : {}),
    ...(args.serve
      ? {
          serve: {
            port: servePort,
            allowInsecure: args["allow-insecure"] === true,
            ...(args["trust-client-certs-dir"] ? { trustClientCertsDir: args["trust-client-certs-dir"] } : {}),
            until: untilStopped,
          },
        }
      : {}),
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
} finally {
  server?.close();
}
