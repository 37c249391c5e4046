import net from "node:net";
import { rawRegister } from "./raw-tcp-device";

/** One request as the gateway's serial line saw it. */
export interface LineRequest {
  /** Requests before it, across every TCP connection. */
  readonly index: number;
  readonly unitId: number;
  readonly functionCode: number;
  readonly address: number;
  /** Quantity (FC 1-4, 15, 16) or value (FC 5, 6). */
  readonly value: number;
  /** The TCP connection it came on (0, 1, ...). */
  readonly connection: number;
}

/** Options of {@link startSerialLineGateway}. */
export interface SerialLineGatewayOptions {
  /** How long (ms) the device takes to answer `request` (the line is busy meanwhile); `"silent"`: no answer. @default 2 */
  readonly deviceMs?: (request: LineRequest) => number | "silent";
  /** Answer `request` a second time this long (ms) after its answer (a device or gateway repeating itself). */
  readonly duplicateAfterMs?: (request: LineRequest) => number | undefined;
  /** Close the TCP connection this long (ms) after `request` came (the serial line goes on working). */
  readonly dropConnectionAfterMs?: (request: LineRequest) => number | undefined;
  /**
   * Keep `request`'s answer on the line (a slow device: the line is busy, later requests wait behind it, in
   * order) until a later TCP connection sends a request of the same function and quantity at another address
   * (the answer then comes 5 ms later, just before that request's own), or 300 ms after that connection's
   * first request, whichever comes first.
   */
  readonly holdUntilReconnect?: (request: LineRequest) => boolean;
}

/**
 * A transparent Modbus TCP-to-RTU gateway in front of one simulated serial device, for tests. Requests go onto
 * the serial line in arrival order and are answered one at a time, in order; every answer is wrapped with the
 * MBAP header (transaction id AND unit id) of the newest request received, and written to the TCP connection
 * open when it leaves the line: the serial side outlives TCP connections, so an answer still on the line when a
 * connection drops comes on the next one. Holding and input register `a` of unit `u` hold `1000 * u + a` (each
 * value names its own address, so a shifted answer shows) until written (FC 6 and 16); coil `a` is `a % 3 === 0`.
 */
export async function startSerialLineGateway(options: SerialLineGatewayOptions = {}) {
  const requests: LineRequest[] = [];
  const writes: LineRequest[] = [];
  const registers = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  let current: net.Socket | undefined;
  let connections = 0;
  let newest = { transactionId: 0, unitId: 0 };
  let lineFreeAt = 0;
  let held: { request: LineRequest; pdu: Buffer; backlog: Buffer[]; timer: boolean } | undefined;
  const release = (): void => {
    if (held === undefined) return;
    const { pdu, backlog } = held;
    held = undefined;
    const now = Date.now();
    lineFreeAt = Math.max(now, lineFreeAt) + 5;
    later(lineFreeAt - now, () => send(pdu));
    for (const next of backlog) {
      lineFreeAt += 2;
      later(lineFreeAt - now, () => send(next));
    }
  };
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const later = (ms: number, run: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, ms);
    timers.add(timer);
  };
  const send = (pdu: Buffer): void => {
    const header = Buffer.alloc(7);
    header.writeUInt16BE(newest.transactionId, 0);
    header.writeUInt16BE(pdu.length + 1, 4);
    header[6] = newest.unitId;
    if (current && !current.destroyed) current.write(Buffer.concat([header, pdu]));
  };
  const server = net.createServer((socket) => {
    const connection = connections++;
    sockets.add(socket);
    current = socket;
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    socket.on("data", (data) => {
      buffer = Buffer.concat([buffer, data]);
      while (buffer.length >= 7 && buffer.length >= 6 + buffer.readUInt16BE(4)) {
        const frame = buffer.subarray(0, 6 + buffer.readUInt16BE(4));
        buffer = buffer.subarray(frame.length);
        newest = { transactionId: frame.readUInt16BE(0), unitId: frame[6]! };
        const request: LineRequest = {
          index: requests.length,
          unitId: frame[6]!,
          functionCode: frame[7]!,
          address: frame.readUInt16BE(8),
          value: frame.readUInt16BE(10),
          connection,
        };
        requests.push(request);
        const pdu = answer(request, frame.subarray(7), registers);
        if (request.functionCode === 6 || request.functionCode === 16) writes.push(request);
        const drop = options.dropConnectionAfterMs?.(request);
        if (drop !== undefined) later(drop, () => socket.destroy());
        if (held !== undefined) {
          const first = held.request;
          held.backlog.push(pdu);
          if (connection > first.connection) {
            const twin =
              request.functionCode === first.functionCode &&
              request.value === first.value &&
              request.address !== first.address;
            if (twin) release();
            else if (!held.timer) {
              held.timer = true;
              later(300, release);
            }
          }
          continue;
        }
        if (options.holdUntilReconnect?.(request) === true) {
          held = { request, pdu, backlog: [], timer: false };
          continue;
        }
        const device = options.deviceMs?.(request) ?? 2;
        if (device === "silent") continue;
        const now = Date.now();
        lineFreeAt = Math.max(now, lineFreeAt) + device;
        later(lineFreeAt - now, () => send(pdu));
        const duplicate = options.duplicateAfterMs?.(request);
        if (duplicate !== undefined) later(lineFreeAt - now + duplicate, () => send(pdu));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    requests,
    writes,
    /** The value of holding register `address` of `unitId` now. */
    holding: (unitId: number, address: number): number =>
      registers.get(`${unitId}/${address}`) ?? rawRegister(unitId, address),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The device's answer PDU to `request` (`pdu` is the request's PDU), applying a write to `registers`. */
function answer(request: LineRequest, pdu: Buffer, registers: Map<string, number>): Buffer {
  const { unitId, functionCode, address, value } = request;
  const word = (at: number): number =>
    (functionCode === 3 ? registers.get(`${unitId}/${at}`) : undefined) ?? rawRegister(unitId, at);
  switch (functionCode) {
    case 3:
    case 4: {
      const out = Buffer.alloc(2 + value * 2);
      out[0] = functionCode;
      out[1] = value * 2;
      for (let index = 0; index < value; index++) out.writeUInt16BE(word(address + index), 2 + index * 2);
      return out;
    }
    case 1:
    case 2: {
      const out = Buffer.alloc(2 + Math.ceil(value / 8));
      out[0] = functionCode;
      out[1] = Math.ceil(value / 8);
      for (let index = 0; index < value; index++) {
        if ((address + index) % 3 === 0) out[2 + (index >> 3)]! |= 1 << (index & 7);
      }
      return out;
    }
    case 6:
      registers.set(`${unitId}/${address}`, value);
      return Buffer.from(pdu.subarray(0, 5));
    case 16:
      for (let index = 0; index < value; index++) {
        registers.set(`${unitId}/${address + index}`, pdu.readUInt16BE(6 + index * 2));
      }
      return Buffer.from(pdu.subarray(0, 5));
    case 5:
      return Buffer.from(pdu.subarray(0, 5));
    default:
      return Buffer.from([functionCode | 0x80, 1]);
  }
}
