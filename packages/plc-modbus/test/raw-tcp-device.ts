import net from "node:net";

/** One request as the raw device saw it. */
export interface RawRequest {
  readonly transactionId: number;
  readonly unitId: number;
  readonly functionCode: number;
  readonly address: number;
  /** Quantity (reads, FC 15/16) or value (FC 5/6). */
  readonly value: number;
  /** Requests seen before this one. */
  readonly index: number;
}

/** How to answer one request: a normal answer changed field by field, an exception, silence, or raw bytes. */
export type RawAnswer =
  | {
      readonly kind: "normal";
      /** A function is called when the answer is sent (after `delayMs`). */
      readonly transactionId?: number | (() => number);
      readonly protocolId?: number;
      /** Added to the MBAP length field. */
      readonly lengthDelta?: number;
      /** A function is called when the answer is sent (a gateway stamping the newest request's unit id). */
      readonly unitId?: number | (() => number);
      readonly byteCount?: number;
      /** Registers sent (default: the quantity asked for). */
      readonly registers?: number;
      /** Replaces the echoed address (writes). */
      readonly echoAddress?: number;
      /** Replaces the echoed value or quantity (writes). */
      readonly echoValue?: number;
      readonly delayMs?: number;
      /** Sends the same answer again this long (ms) after the first (a stale duplicate). */
      readonly duplicateAfterMs?: number;
      /**
       * Sends the request's own plain answer (nothing changed) this long (ms) after this one: with `values`,
       * a gateway that hands a late answer it held back to the next request first, then that one's own.
       */
      readonly thenOwnAfterMs?: number;
      /** With `thenOwnAfterMs`: that answer carries this answer's `transactionId` (a gateway stamping the newest id). */
      readonly ownStamped?: boolean;
      /** Sends the answer without its last `cut` bytes (a frame cut short on the way; the header is intact). */
      readonly cut?: number;
      /** With `cut`: sends the whole answer right after the cut one (a gateway retrying). */
      readonly thenWhole?: boolean;
      /**
       * Writes each answer's MBAP header and PDU separately, this many ms apart (a gateway writing header
       * and PDU as two segments), so the client receives them in separate reads.
       */
      readonly splitHeaderMs?: number;
      /** Register values sent, in order (reads of registers; default {@link rawRegister}). */
      readonly values?: readonly number[];
      /** Bytes (0xAA) appended to the answer, in the same write: a device that sends junk after each frame. */
      readonly trailing?: number;
    }
  | {
      readonly kind: "exception";
      readonly code: number;
      readonly delayMs?: number;
      /** A function is called when the answer is sent (a gateway stamping the newest request's id). */
      readonly transactionId?: number | (() => number);
      /** A function is called when the answer is sent (a gateway stamping the newest request's unit id). */
      readonly unitId?: number | (() => number);
    }
  | { readonly kind: "silent" }
  /** Closes the connection at once, without answering (a device or gateway dropping the link). */
  | { readonly kind: "reset" };

/** Holding and input register `address` of `unitId` hold `1000 * unitId + address`; coils alternate. */
export function rawRegister(unitId: number, address: number): number {
  return (1000 * unitId + address) & 0xffff;
}

/**
 * A deliberately wrong Modbus TCP device for tests: every answer is built from the request and then bent
 * by `answer` (a byte count that disagrees, another transaction id, a wrong echo, silence, ...).
 */
export async function startRawTcpDevice(
  answer: (request: RawRequest) => RawAnswer,
): Promise<{ host: string; port: number; requests: RawRequest[]; stop: () => Promise<void> }> {
  const requests: RawRequest[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    let writing = Promise.resolve();
    socket.on("data", (data) => {
      buffer = Buffer.concat([buffer, data]);
      while (buffer.length >= 7 && buffer.length >= 6 + buffer.readUInt16BE(4)) {
        const frame = buffer.subarray(0, 6 + buffer.readUInt16BE(4));
        buffer = buffer.subarray(frame.length);
        const request: RawRequest = {
          transactionId: frame.readUInt16BE(0),
          unitId: frame[6]!,
          functionCode: frame[7]!,
          address: frame.readUInt16BE(8),
          value: frame.readUInt16BE(10),
          index: requests.length,
        };
        requests.push(request);
        const reply = answer(request);
        if (reply.kind === "silent") continue;
        if (reply.kind === "reset") {
          socket.destroy();
          return;
        }
        const delay = reply.delayMs ?? 0;
        const duplicate = reply.kind === "normal" ? reply.duplicateAfterMs : undefined;
        if (duplicate !== undefined)
          setTimeout(() => socket.destroyed || socket.write(build(request, reply)), duplicate);
        const own = reply.kind === "normal" ? reply.thenOwnAfterMs : undefined;
        if (own !== undefined)
          setTimeout(() => {
            const stamp = reply.kind === "normal" && reply.ownStamped === true ? reply.transactionId : undefined;
            if (!socket.destroyed)
              socket.write(
                build(request, { kind: "normal", ...(stamp === undefined ? {} : { transactionId: stamp }) }),
              );
          }, own);
        const send = (): void => {
          const built = build(request, reply);
          const trailing = reply.kind === "normal" ? (reply.trailing ?? 0) : 0;
          const whole = trailing > 0 ? Buffer.concat([built, Buffer.alloc(trailing, 0xaa)]) : built;
          const cut = reply.kind === "normal" ? (reply.cut ?? 0) : 0;
          const splitMs = reply.kind === "normal" ? reply.splitHeaderMs : undefined;
          if (splitMs !== undefined) {
            const parts = [whole.subarray(0, 7), whole.subarray(7, whole.length - cut)];
            if (cut > 0 && reply.kind === "normal" && reply.thenWhole === true)
              parts.push(whole.subarray(0, 7), whole.subarray(7));
            // One answer's parts at a time, like a gateway: pipelined answers never interleave.
            writing = writing.then(
              () =>
                new Promise<void>((done) => {
                  const next = (): void => {
                    const part = parts.shift();
                    if (part === undefined || socket.destroyed) return done();
                    socket.write(part);
                    setTimeout(next, splitMs);
                  };
                  next();
                }),
            );
          } else if (cut === 0) socket.write(whole);
          else {
            socket.write(whole.subarray(0, whole.length - cut));
            if (reply.kind === "normal" && reply.thenWhole === true) socket.write(whole);
          }
        };
        if (delay > 0) setTimeout(() => socket.destroyed || send(), delay);
        else send();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: "127.0.0.1",
    port,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function build(request: RawRequest, reply: Exclude<RawAnswer, { kind: "silent" } | { kind: "reset" }>): Buffer {
  let pdu: Buffer;
  if (reply.kind === "exception") pdu = Buffer.from([request.functionCode | 0x80, reply.code]);
  else if (request.functionCode === 3 || request.functionCode === 4) {
    const count = reply.registers ?? request.value;
    pdu = Buffer.alloc(2 + count * 2);
    pdu[0] = request.functionCode;
    pdu[1] = reply.byteCount ?? count * 2;
    for (let index = 0; index < count; index++) {
      const value = reply.values?.[index] ?? rawRegister(request.unitId, request.address + index);
      pdu.writeUInt16BE(value & 0xffff, 2 + index * 2);
    }
  } else if (request.functionCode === 1 || request.functionCode === 2) {
    const bytes = Math.ceil(request.value / 8);
    pdu = Buffer.alloc(2 + bytes, 0x55);
    pdu[0] = request.functionCode;
    pdu[1] = reply.byteCount ?? bytes;
  } else {
    pdu = Buffer.alloc(5);
    pdu[0] = request.functionCode;
    pdu.writeUInt16BE(reply.echoAddress ?? request.address, 1);
    pdu.writeUInt16BE(reply.echoValue ?? request.value, 3);
  }
  const normal = reply.kind === "normal" ? reply : undefined;
  const header = Buffer.alloc(7);
  const stamped = reply.transactionId;
  const transactionId = typeof stamped === "function" ? stamped() : stamped;
  header.writeUInt16BE(transactionId ?? request.transactionId, 0);
  header.writeUInt16BE(normal?.protocolId ?? 0, 2);
  header.writeUInt16BE(pdu.length + 1 + (normal?.lengthDelta ?? 0), 4);
  header[6] = (typeof reply.unitId === "function" ? reply.unitId() : reply.unitId) ?? request.unitId;
  return Buffer.concat([header, pdu]);
}
