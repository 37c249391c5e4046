import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

// Debian's pymodbus (python3-pymodbus) as a third-party Modbus peer, for the integration tests
// that cross-check the driver against it over TCP and over RTU on a socat pair.
const script = fileURLToPath(new URL("./pymodbus-server.py", import.meta.url));

/** A python that imports pymodbus and pyserial, or undefined (the tests skip, naming the package). */
export const pymodbusPython = ["python3", "/usr/bin/python3"].find(
  (command) => spawnSync(command, ["-c", "import pymodbus, serial"], { stdio: "ignore" }).status === 0,
);

/**
 * Starts pymodbus-server.py on `target` (a TCP port, or a serial device for `rtu`) and registers
 * its stop in `cleanups` (SIGCONT first, so a server a test paused with SIGSTOP exits too).
 */
export function startPymodbus(
  mode: "tcp" | "rtu",
  target: string,
  cleanups: (() => Promise<void> | void)[],
): ChildProcess {
  const server: ChildProcess = spawn(pymodbusPython!, [script, mode, target], { stdio: "ignore" });
  cleanups.push(async () => {
    if (server.exitCode !== null) return;
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGCONT");
    server.kill();
    await exited;
  });
  return server;
}
