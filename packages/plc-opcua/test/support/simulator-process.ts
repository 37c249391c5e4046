/**
 * Runs an OpcuaSimulator in its own process, for benchmarks (so the server's work does not
 * share the measured process). Forked with `node --conditions=@kiln/source --import tsx`; reads
 * its configuration as JSON from the KILN_OPCUA_SIMULATOR env variable, answers on the IPC
 * channel with `{ endpointUrl, certificateFile, addresses }` once listening, and stops on the
 * message "stop" (or when the parent goes away). Answers the message "live-subscriptions" with
 * `{ liveSubscriptions: simulator.liveSubscriptions() }`, for tests that count on the server.
 */
import { defineTags, type SignalSpec, type TagDataType, type TagDefinitionInput } from "@kiln/core";
import { OpcuaSimulator, type OpcuaSimulatorOptions } from "../../src/index";

/** What the parent asks for. */
export interface SimulatorProcessConfig {
  /** Number of tags, named `bench.<index>`, at `ns=2;s=Bench.<index>`. */
  readonly tagCount: number;
  readonly dataType: TagDataType;
  /** The signal of every tag. */
  readonly signal: SignalSpec;
  readonly updateIntervalMs: number;
  readonly securityModes?: OpcuaSimulatorOptions["securityModes"];
  readonly operationLimits?: OpcuaSimulatorOptions["operationLimits"];
}

/** What the child answers once listening. */
export interface SimulatorProcessReady {
  readonly endpointUrl: string;
  readonly certificateFile: string;
  /** The `nsu=` address of each tag, in order. */
  readonly addresses: readonly string[];
}

/** The environment variable carrying the JSON {@link SimulatorProcessConfig}. */
export const SIMULATOR_PROCESS_CONFIG = "KILN_OPCUA_SIMULATOR";

async function main(): Promise<void> {
  const config = JSON.parse(process.env[SIMULATOR_PROCESS_CONFIG] ?? "null") as SimulatorProcessConfig | null;
  if (!config || !process.send) throw new Error(`run me with fork() and ${SIMULATOR_PROCESS_CONFIG} set`);
  const definitions: Record<string, TagDefinitionInput> = {};
  const signals: Record<string, SignalSpec> = {};
  for (let index = 0; index < config.tagCount; index++) {
    definitions[`bench.${index}`] = { dataType: config.dataType, address: `ns=2;s=Bench.${index}` };
    signals[`bench.${index}`] = config.signal;
  }
  const tags = defineTags(definitions);
  const simulator = new OpcuaSimulator({
    tags,
    signals,
    updateIntervalMs: config.updateIntervalMs,
    ...(config.securityModes ? { securityModes: config.securityModes } : {}),
    ...(config.operationLimits ? { operationLimits: config.operationLimits } : {}),
  });
  await simulator.start();
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await simulator.dispose();
    if (process.connected) process.disconnect();
    process.exit(0);
  };
  process.on("message", (message) => {
    if (message === "stop") void stop();
    if (message === "live-subscriptions") process.send!({ liveSubscriptions: simulator.liveSubscriptions() });
  });
  process.on("disconnect", () => void stop());
  const ready: SimulatorProcessReady = {
    endpointUrl: simulator.endpointUrl,
    certificateFile: simulator.certificateFile,
    addresses: tags.names.map((name) => simulator.addressOf(name)),
  };
  process.send(ready);
}

await main();
