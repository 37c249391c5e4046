/**
 * Vitest setup file of the OPC UA server project: node-opcua's console output (certificate
 * warnings, the errors the security tests provoke on purpose) is dropped instead of filling the
 * test output. Set `KILN_NODE_OPCUA_LOGS=1` to see it while debugging a test.
 */
import { setDebugLogger, setErrorLogger, setTraceLogger, setWarningLogger } from "node-opcua-debug";

if (process.env.KILN_NODE_OPCUA_LOGS !== "1") {
  const drop = (): void => undefined;
  setErrorLogger(drop);
  setWarningLogger(drop);
  setTraceLogger(drop);
  setDebugLogger(drop);
}
