/** Starts the OPC UA simulator in another process for the opcua-* benchmarks. */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { SignalSpec } from "@kiln/core";
import { forkReady } from "./harness";

const SIMULATOR_SCRIPT = fileURLToPath(
  new URL("../packages/plc-opcua/test/support/simulator-process.ts", import.meta.url),
);

/** What the simulator process reports once it listens. */
export interface SimulatorReady {
  readonly endpointUrl: string;
  readonly addresses: readonly string[];
}

/** `tagCount` Double variables driven by `signal`, security None (the benchmarks measure the client). */
export function startOpcuaSimulator(config: {
  readonly tagCount: number;
  readonly signal: SignalSpec;
  readonly updateIntervalMs: number;
}): Promise<{ child: ChildProcess; ready: SimulatorReady }> {
  const full = { ...config, dataType: "float64", securityModes: ["None"] };
  return forkReady<SimulatorReady>(
    SIMULATOR_SCRIPT,
    { KILN_OPCUA_SIMULATOR: JSON.stringify(full) },
    "OPC UA simulator",
  );
}
