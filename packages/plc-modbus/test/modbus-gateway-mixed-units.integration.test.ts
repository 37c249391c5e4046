import net from "node:net";
import { defineTags, type Sample } from "@kiln/core";
import { afterEach, describe, expect, it } from "vitest";
import { ModbusDriver } from "../src/index";

// adv12l HIGH-1 (ADR 0041, amendment adv12l): fix12k tells a device's own exception 4 or 6 from a queued
// gateway's answer to its serial timeout by the unit's usual answer time, but kept one median per TCP
// connection. Behind one gateway, a slow unit (60 ms) raised it for a fast one (5 ms): the gateway's 4 or 6
// at 100 ms for the fast unit looked usual, was taken as final, and the fast unit's late answer went to the
// next read, good and wrong: 152-197 wrong good values in 15 scans. Answer times are now kept per unit.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Every (unit, address) holds its own value, so a value from another request is wrong. */
const valueAt = (unit: number, address: number) => (unit * 7_000 + address) & 0xffff;

interface GatewayOptions {
  /** The gateway gives up on the device after this (ms) and answers `code`. */
  readonly gwTimeoutMs: number;
  readonly code: number;
  /** The device's answer time (ms) for unit `unit`'s `n`-th request. */
  readonly latency: (unit: number, n: number) => number;
}

/** A queued gateway with one serial line: one request at a time; a late device answer goes to the request served next. */
async function gateway(options: GatewayOptions) {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    type Request = { tid: number; unit: number; fc: number; addr: number; qty: number };
    let buffer = Buffer.alloc(0);
    const queue: Request[] = [];
    let current: Request | undefined;
    let timer: NodeJS.Timeout | undefined;
    const perUnit = new Map<number, number>();
    const send = (tid: number, unit: number, pdu: Buffer) => {
      const header = Buffer.alloc(7);
      header.writeUInt16BE(tid, 0);
      header.writeUInt16BE(pdu.length + 1, 4);
      header.writeUInt8(unit, 6);
      if (!socket.destroyed) socket.write(Buffer.concat([header, pdu]));
    };
    const pduFor = (request: Request) => {
      if (request.fc !== 3) return Buffer.from([request.fc | 0x80, 1]);
      const pdu = Buffer.alloc(2 + 2 * request.qty);
      pdu[0] = 3;
      pdu[1] = 2 * request.qty;
      for (let index = 0; index < request.qty; index++)
        pdu.writeUInt16BE(valueAt(request.unit, request.addr + index), 2 + 2 * index);
      return pdu;
    };
    const next = () => {
      if (current !== undefined || queue.length === 0) return;
      const request = (current = queue.shift()!);
      const n = perUnit.get(request.unit) ?? 0;
      perUnit.set(request.unit, n + 1);
      // The device's answer comes on the serial line whenever it comes: to whatever request is served then.
      setTimeout(
        () => {
          if (current === undefined) return;
          const served = current;
          clearTimeout(timer);
          current = undefined;
          send(served.tid, served.unit, pduFor(request));
          setImmediate(next);
        },
        options.latency(request.unit, n),
      );
      timer = setTimeout(() => {
        if (current !== request) return;
        current = undefined;
        send(request.tid, request.unit, Buffer.from([request.fc | 0x80, options.code]));
        setImmediate(next);
      }, options.gwTimeoutMs);
    };
    socket.on("data", (data) => {
      buffer = Buffer.concat([buffer, data]);
      while (buffer.length >= 7) {
        const length = buffer.readUInt16BE(4);
        if (buffer.length < 6 + length) break;
        const frame = buffer.subarray(0, 6 + length);
        buffer = buffer.subarray(6 + length);
        queue.push({
          tid: frame.readUInt16BE(0),
          unit: frame[6]!,
          fc: frame[7]!,
          addr: frame.readUInt16BE(8),
          qty: frame.readUInt16BE(10),
        });
        next();
      }
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

function countWrong(samples: readonly Sample[]): { good: number; wrong: string[] } {
  let good = 0;
  const wrong: string[] = [];
  for (const sample of samples) {
    if (sample.quality.severity !== "good") continue;
    good++;
    const [, unit, address] = /^u(\d+)_(\d+)$/.exec(sample.tag)!;
    if (sample.value !== valueAt(Number(unit), Number(address))) wrong.push(`${sample.tag}=${String(sample.value)}`);
  }
  return { good, wrong };
}

describe("a gateway's late 4 or 6 for a fast unit beside a slow unit on the same serial line (adv12l HIGH-1)", () => {
  for (const { code, maxInFlight, separateShapes } of [
    { code: 6, maxInFlight: 2, separateShapes: undefined },
    { code: 4, maxInFlight: 1, separateShapes: false },
  ]) {
    it(`exception ${code}, maxInFlight ${maxInFlight}${separateShapes === false ? ", separateShapes false" : ""}: no value of another request shown as good`, async () => {
      // Unit 1: 20 one-register reads, 60 ms each. Unit 2: 6, 5 ms, every 5th one 250 ms (the gateway gives up at 100 ms).
      const port = await gateway({
        gwTimeoutMs: 100,
        code,
        latency: (unit, n) => (unit === 1 ? 60 : n > 5 && n % 5 === 0 ? 250 : 5),
      });
      const driver = new ModbusDriver({
        transport: { kind: "tcp", host: "127.0.0.1", port, ...(separateShapes === false ? { separateShapes } : {}) },
        requestTimeoutMs: 400,
        reconnect: { initialDelayMs: 50 },
        maxInFlight,
      });
      cleanups.push(() => driver.close());
      await driver.connect();
      const definitions: Record<string, { dataType: "uint16"; address: string }> = {};
      for (const [unit, count] of [
        [1, 20],
        [2, 6],
      ] as const)
        for (let index = 0; index < count; index++)
          definitions[`u${unit}_${index * 100}`] = { dataType: "uint16", address: `HR${index * 100}@${unit}` };
      const tags = defineTags(definitions).list();
      let good = 0;
      const wrong: string[] = [];
      for (let scan = 0; scan < 6; scan++) {
        const counted = countWrong(await driver.read(tags));
        good += counted.good;
        wrong.push(...counted.wrong);
      }
      // Before: dozens (unit 2's late answers read as unit 1's registers and on down the chain).
      expect(wrong).toEqual([]);
      expect(good).toBeGreaterThan(0);
    }, 120_000);
  }
});
