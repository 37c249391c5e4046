import { defineTags, type Sample } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { rawRegister, startRawTcpDevice, type RawAnswer, type RawRequest } from "./raw-tcp-device";

// The rig of the id-proof tests (issue 12, ADR 0041 amendments fix12e, fix12f, fix12g): twenty one-register tags
// behind a raw device that may stamp the newest request's id like a transparent gateway.

/** Twenty one-register tags, one block each (100 registers apart): twenty reads of one answer shape. */
export const ADDRESSES = Array.from({ length: 20 }, (_, index) => index * 100);
export const all = defineTags(
  Object.fromEntries(ADDRESSES.map((address) => [`hr${address}`, { dataType: "uint16", address: `HR${address}@1` }])),
).list();

/** Good samples whose value is not their own register's. */
export function wrongGood(samples: readonly Sample[]): string[] {
  return samples
    .filter((sample) => sample.quality.severity === "good")
    .filter((sample) => sample.value !== rawRegister(1, Number(sample.tag.slice(2))))
    .map((sample) => `${sample.tag}=${String(sample.value)}`);
}

/**
 * A raw device answering after 15 ms; `stampNewest` (switchable) stamps every answer with the newest request's id
 * like a transparent gateway, else with the request's own; `bend` may answer a request otherwise. Default driver
 * settings apart from the request timeout and `transport` (added to the TCP transport). The device and the driver
 * are pushed onto `cleanups`.
 */
export async function idProofPeer(
  cleanups: (() => Promise<void>)[],
  mode: { stampNewest: boolean },
  bend: (request: RawRequest, stamp: () => number) => RawAnswer | undefined,
  transport: { readonly separateShapes?: boolean } = {},
) {
  let newest = 0;
  const device = await startRawTcpDevice((request) => {
    newest = request.transactionId;
    const own = request.transactionId;
    const stamp = () => (mode.stampNewest ? newest : own);
    return bend(request, stamp) ?? { kind: "normal", delayMs: 15, transactionId: stamp };
  });
  cleanups.push(() => device.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: device.host, port: device.port, ...transport },
    requestTimeoutMs: 300,
    reconnect: { initialDelayMs: 50 },
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  return { driver, device };
}

/** One extra frame (HR30's word) lands in HR300's window while `armed.extra`, HR300's own answer 15 ms behind it, stamped the same. */
export function extraFrameAt300(armed: { extra: boolean }) {
  return (request: RawRequest, stamp: () => number): RawAnswer | undefined => {
    if (request.functionCode !== 3 || request.address !== 300 || !armed.extra) return undefined;
    armed.extra = false;
    return { kind: "normal", values: [rawRegister(1, 30)], transactionId: stamp, thenOwnAfterMs: 15, ownStamped: true };
  };
}
