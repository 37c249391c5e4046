import { afterEach } from "vitest";
import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver, type ModbusAnswerStreamChange, type ModbusDriverOptions } from "../src/index";
import { rawRegister } from "./raw-tcp-device";
import { startSerialLineGateway, type SerialLineGatewayOptions } from "./serial-line-gateway";

// Shared by the answer-stream tests: a driver on a simulated transparent gateway (see serial-line-gateway.ts)
// and scans that count good values that are wrong (every register's value names its own address).

export const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Request timeout; the late bound of the old ledger was twice this (timeout plus guard). */
export const TIMEOUT_MS = 200;

export const tags = defineTags({
  a: { dataType: "uint16", address: "HR10" },
  b: { dataType: "uint16", address: "HR20" },
  c: { dataType: "uint16", address: "HR30" },
  d: { dataType: "uint16", address: "IR10" },
  flag: { dataType: "bool", access: "readwrite", address: "HR40.3" },
});
export const readTags = ["a", "b", "c", "d"].map((name) => tags.get(name));
const expected = new Map([
  ["a", rawRegister(1, 10)],
  ["b", rawRegister(1, 20)],
  ["c", rawRegister(1, 30)],
  ["d", rawRegister(1, 10) /* input register 10 of unit 1 */],
]);

export async function gateway(options: SerialLineGatewayOptions) {
  const line = await startSerialLineGateway(options);
  cleanups.push(() => line.stop());
  return line;
}

export async function driverFor(port: number, options: Partial<ModbusDriverOptions> = {}) {
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port },
    requestTimeoutMs: TIMEOUT_MS,
    planner: { maxGap: 0 },
    reconnect: { initialDelayMs: 20, jitter: 0 },
    ...options,
  });
  cleanups.push(() => driver.close());
  const changes: ModbusAnswerStreamChange[] = [];
  const health: string[] = [];
  driver.onAnswerStreamChange((change) => {
    changes.push(change);
    if (!change.aligned) health.push(...driver.endpoints().map((endpoint) => `${endpoint.endpoint}:${endpoint.state}`));
  });
  await driver.connect();
  return { driver, changes, health };
}

/** Good samples whose value is not their register's. */
export function wrongGood(samples: readonly Sample[]): string[] {
  return samples
    .filter((sample) => sample.quality.severity === "good" && sample.value !== expected.get(sample.tag))
    .map((sample) => `${sample.tag}=${String(sample.value)} (true ${expected.get(sample.tag)})`);
}

export const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Scans `rounds` times (a read of a, b, c, d and, if `flagWrites`, a bit write), counting wrong good values. */
export async function scan(
  driver: ModbusDriver,
  rounds: number,
  options: { flagWrites?: boolean; gapMs?: number } = {},
) {
  const wrong: string[] = [];
  let good = 0;
  let total = 0;
  for (let round = 0; round < rounds; round++) {
    // While the connection is down a read fails as a whole: its tags count as not good.
    const samples = await driver.read(readTags).catch(() => readTags.map(() => undefined));
    const got = samples.filter((sample): sample is Sample => sample !== undefined);
    wrong.push(...wrongGood(got));
    good += got.filter((sample) => sample.quality.severity === "good").length;
    total += samples.length;
    if (options.flagWrites === true) await driver.write(tags.get("flag"), round % 2 === 0).catch(() => undefined);
    if (options.gapMs !== undefined) await pause(options.gapMs);
  }
  return { wrong, good, total };
}

/** FC 6 writes to HR40 whose value is not HR40's true word with bit 3 set or cleared (a foreign word written back). */
export function foreignWrites(line: Awaited<ReturnType<typeof gateway>>): string[] {
  const word = rawRegister(1, 40);
  return line.writes
    .filter((write) => write.address === 40 && write.value !== (word | 8) && write.value !== (word & ~8))
    .map((write) => `HR40=${write.value}`);
}
