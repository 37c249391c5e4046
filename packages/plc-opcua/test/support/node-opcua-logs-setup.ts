/**
 * Vitest setup file of the OPC UA projects: node-opcua's console output (certificate warnings,
 * reconnection chatter, the errors the fault tests provoke on purpose) goes through
 * `routeNodeOpcuaLogs`, as an application using Kiln would route it, instead of into the test
 * output. Set `KILN_NODE_OPCUA_LOGS=1` to see it on stderr while debugging a test.
 */
import { silentLogger, type LogMethod, type Logger } from "@kiln/core";
import { routeNodeOpcuaLogs } from "../../src/index";

function stderrLogger(bindings: Record<string, unknown> = {}): Logger {
  const write =
    (level: string): LogMethod =>
    (fields: Record<string, unknown> | string, message?: string): void => {
      const text = typeof fields === "string" ? fields : (message ?? "");
      const context = typeof fields === "string" ? {} : fields;
      process.stderr.write(`[${level}] ${JSON.stringify({ ...bindings, ...context })} ${text}\n`);
    };
  return {
    error: write("error"),
    warn: write("warn"),
    info: write("info"),
    debug: write("debug"),
    child: (more) => stderrLogger({ ...bindings, ...more }),
  };
}

await routeNodeOpcuaLogs(process.env.KILN_NODE_OPCUA_LOGS === "1" ? stderrLogger() : silentLogger);
