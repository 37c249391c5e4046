/**
 * Vitest setup file of the examples project: the example tests run the demos' parts in process
 * (simulated OPC UA PLCs, the reactor's OPC UA server), so node-opcua's console output (its CVE
 * flag hint, "Creating default certificate") goes through `routeNodeOpcuaLogs`, as each demo's
 * `main.ts` routes it, instead of into the test output. `KILN_NODE_OPCUA_LOGS=1` shows it on stderr.
 */
import { silentLogger, type Logger } from "@kiln/core";
import { routeNodeOpcuaLogs } from "@kiln/plc-opcua";

const write = (fields: Record<string, unknown> | string, message?: string): void => {
  process.stderr.write(`node-opcua: ${typeof fields === "string" ? fields : (message ?? "")}\n`);
};
const stderr: Logger = {
  error: write,
  warn: write,
  info: () => undefined,
  debug: () => undefined,
  child: () => stderr,
};

await routeNodeOpcuaLogs(process.env.KILN_NODE_OPCUA_LOGS === "1" ? stderr : silentLogger);
