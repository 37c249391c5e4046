/** Modbus RTU framing (Modbus over serial line v1.02, 2.5): unit id, PDU, CRC-16 low byte first. */

/** CRC-16/MODBUS of `bytes` (polynomial 0xA001 reflected, initial 0xFFFF). */
export function crc16(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** `unitId` + `pdu` + CRC: one RTU frame. */
export function rtuFrame(unitId: number, pdu: Uint8Array): Buffer {
  const frame = Buffer.alloc(pdu.length + 3);
  frame[0] = unitId;
  frame.set(pdu, 1);
  frame.writeUInt16LE(crc16(frame.subarray(0, frame.length - 2)), frame.length - 2);
  return frame;
}

/** A request as sent, with what its answer must look like. */
export interface RtuRequest {
  readonly unitId: number;
  readonly functionCode: number;
  /** The request PDU (function code first). */
  readonly pdu: Buffer;
  /** Length of the whole normal answer frame, CRC included. */
  readonly answerLength: number;
  /** Registers or bits asked for (reads). */
  readonly quantity: number;
}

/** An RTU request for a read (1-4) of `quantity` items at `address`, or a write PDU (5, 6, 15, 16, 22). */
export function rtuRequest(unitId: number, pdu: Buffer): RtuRequest {
  const functionCode = pdu[0]!;
  const quantity = functionCode <= 4 ? pdu.readUInt16BE(3) : 0;
  const answerLength =
    functionCode === 1 || functionCode === 2
      ? 5 + Math.ceil(quantity / 8)
      : functionCode === 3 || functionCode === 4
        ? 5 + quantity * 2
        : functionCode === 22
          ? 10
          : 8;
  return { unitId, functionCode, pdu, answerLength, quantity };
}

/** How many bytes the answer to `request` takes, judged from its first bytes; undefined: not known yet. */
export function expectedAnswerLength(request: RtuRequest, received: Buffer): number | undefined {
  if (received.length < 2) return undefined;
  // Any exception frame is 5 bytes; one for another function code is then refused as a mismatch.
  if ((received[1]! & 0x80) !== 0) return 5;
  return request.answerLength;
}

/** What an answer frame says: data, an exception code, or why it does not answer the request. */
export type RtuAnswer =
  | { readonly kind: "data"; readonly data: Buffer }
  | { readonly kind: "exception"; readonly code: number }
  | { readonly kind: "mismatch"; readonly reason: string };

/**
 * Checks one complete RTU answer `frame` against `request`: CRC and unit id, then the PDU by
 * {@link checkAnswerPdu}. Only an exact match is data.
 */
export function checkRtuAnswer(request: RtuRequest, frame: Buffer): RtuAnswer {
  if (frame.length < 5) return { kind: "mismatch", reason: `short frame of ${frame.length} bytes` };
  const crc = frame.readUInt16LE(frame.length - 2);
  if (crc !== crc16(frame.subarray(0, frame.length - 2))) {
    return { kind: "mismatch", reason: "CRC error (the frame was corrupted on the line)" };
  }
  const unitId = frame[0]!;
  if (unitId !== request.unitId) {
    return { kind: "mismatch", reason: `answer from unit ${unitId} to a request for unit ${request.unitId}` };
  }
  return checkAnswerPdu(request, frame.subarray(1, frame.length - 2));
}

/**
 * Checks an answer PDU (function code first, no unit id, no CRC or MBAP header) against `request`, for RTU
 * and TCP alike (Modbus application protocol v1.1b3, section 6): function code, PDU length, byte count
 * against the quantity asked for (2 per register, ceil(quantity / 8) for bits), and for writes the echoed
 * address and value or quantity (FC 5, 6, 15, 16) or masks (FC 22). Only an exact match is data.
 */
export function checkAnswerPdu(request: RtuRequest, pdu: Buffer): RtuAnswer {
  const functionCode = pdu[0];
  if (functionCode === undefined) return { kind: "mismatch", reason: "empty answer" };
  if (functionCode === (request.functionCode | 0x80)) {
    if (pdu.length !== 2)
      return { kind: "mismatch", reason: `exception answer of ${pdu.length} bytes where 2 were due` };
    return { kind: "exception", code: pdu[1]! };
  }
  if (functionCode !== request.functionCode) {
    return {
      kind: "mismatch",
      reason: `answer with function code ${functionCode} to a request with function code ${request.functionCode}`,
    };
  }
  const due = request.answerLength - 3;
  if (request.functionCode <= 4) {
    const byteCount = pdu[1];
    if (byteCount !== due - 2) {
      return {
        kind: "mismatch",
        reason: `byte count ${byteCount ?? "missing"} for ${request.quantity} ${request.functionCode <= 2 ? "bits" : "registers"} (${due - 2} due)`,
      };
    }
  }
  if (pdu.length !== due) return { kind: "mismatch", reason: `answer of ${pdu.length} bytes where ${due} were due` };
  if (request.functionCode <= 4) return { kind: "data", data: pdu.subarray(2) };
  // Writes echo the request's address and quantity or value (FC 5, 6, 15, 16) or the masks (FC 22).
  const echoLength = request.functionCode === 22 ? 6 : 4;
  if (!pdu.subarray(1, 1 + echoLength).equals(request.pdu.subarray(1, 1 + echoLength))) {
    return { kind: "mismatch", reason: "the echoed address or value differs from the request" };
  }
  return { kind: "data", data: pdu.subarray(1) };
}

/**
 * Splits bytes that came while no request waited into whole answer frames (their length judged from the
 * function code and byte count, as an answer's: exception 5 bytes, reads 5 + byte count, writes 8, FC 22 10;
 * each with a good CRC), from the start; `rest`: the bytes from the first that start no whole frame (noise,
 * a cut frame).
 */
export function splitRtuFrames(bytes: Buffer): { readonly frames: Buffer[]; readonly rest: number } {
  const frames: Buffer[] = [];
  let offset = 0;
  while (bytes.length - offset >= 5) {
    const functionCode = bytes[offset + 1]!;
    const length =
      functionCode & 0x80
        ? 5
        : functionCode >= 1 && functionCode <= 4
          ? 5 + bytes[offset + 2]!
          : functionCode === 22
            ? 10
            : [5, 6, 15, 16].includes(functionCode)
              ? 8
              : 0;
    const frame = bytes.subarray(offset, offset + length);
    if (length === 0 || frame.length < length) break;
    if (frame.readUInt16LE(length - 2) !== crc16(frame.subarray(0, length - 2))) break;
    frames.push(frame);
    offset += length;
  }
  return { frames, rest: bytes.length - offset };
}
