import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { OpcuaDriver, OpcuaSimulator, type OpcuaSimulatorOptions } from "../../src/index";

/** A started simulator (security None) and a driver connected to it; `stop` closes both and removes their PKI. */
export interface SimulatorWithDriver {
  readonly simulator: OpcuaSimulator;
  readonly driver: OpcuaDriver;
  readonly stop: () => Promise<void>;
}

/**
 * Starts an {@link OpcuaSimulator} serving `options` (security None, 50 ms updates) and connects
 * an {@link OpcuaDriver} to it, their PKI in a fresh folder named after `name`. For test files
 * that read and write one simulator from beforeAll to afterAll.
 */
export async function simulatorWithDriver(
  name: string,
  options: Omit<OpcuaSimulatorOptions, "securityModes" | "updateIntervalMs" | "pkiDir">,
): Promise<SimulatorWithDriver> {
  const workDir = await mkdtemp(path.join(tmpdir(), `kiln-opcua-${name}-`));
  const simulator = new OpcuaSimulator({
    ...options,
    securityModes: ["None"],
    updateIntervalMs: 50,
    pkiDir: path.join(workDir, "server"),
  });
  await simulator.start();
  const driver = new OpcuaDriver({
    endpointUrl: simulator.endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
  });
  await driver.connect();
  return {
    simulator,
    driver,
    stop: async () => {
      await driver.close();
      await simulator.dispose();
      await rm(workDir, { recursive: true, force: true });
    },
  };
}
