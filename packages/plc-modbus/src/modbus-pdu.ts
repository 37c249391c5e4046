/** Request PDUs and answer data of the Modbus application protocol (v1.1b3, section 6), for RTU and TCP. */

import { answerDoubt, doubtAnswer } from "./modbus-answer-repeat";

/** `decoded`, uncertain for the same reason as the `answer` it was decoded from (see `ModbusAnswerRepeats`). */
function withDoubt<TData extends object>(answer: Buffer, decoded: TData): TData {
  const doubt = answerDoubt(answer);
  return doubt === undefined ? decoded : doubtAnswer(decoded, doubt);
}

/** A 5-byte PDU: function code, then two 16-bit fields (address and quantity or value). */
export function modbusPdu(functionCode: number, address: number, value: number): Buffer {
  const bytes = Buffer.alloc(5);
  bytes.writeUInt8(functionCode, 0);
  bytes.writeUInt16BE(address, 1);
  bytes.writeUInt16BE(value & 0xffff, 3);
  return bytes;
}

/** FC 15: write `states` to coils from `address`. */
export function writeCoilsPdu(address: number, states: readonly boolean[]): Buffer {
  const data = Buffer.alloc(Math.ceil(states.length / 8));
  states.forEach((state, index) => {
    if (state) data[index >> 3]! |= 1 << (index & 7);
  });
  return Buffer.concat([modbusPdu(15, address, states.length), Buffer.from([data.length]), data]);
}

/** FC 16: write `values` (16-bit) to holding registers from `address`. */
export function writeRegistersPdu(address: number, values: readonly number[]): Buffer {
  const data = Buffer.alloc(values.length * 2);
  values.forEach((value, index) => data.writeUInt16BE(value & 0xffff, index * 2));
  return Buffer.concat([modbusPdu(16, address, values.length), Buffer.from([data.length]), data]);
}

/** The first `count` bits of a bit-read answer's data, least significant bit of the first byte first. */
export function bitsFromBytes(data: Buffer, count: number): boolean[] {
  const result = new Array<boolean>(count);
  for (let index = 0; index < count; index++) result[index] = ((data[index >> 3]! >> (index & 7)) & 1) === 1;
  return result;
}

/** The 16-bit registers of a register-read answer's data (big-endian). */
export function wordsFromBytes(data: Buffer): number[] {
  const result = new Array<number>(data.length >> 1);
  for (let index = 0; index < result.length; index++) result[index] = data.readUInt16BE(index * 2);
  return result;
}

/**
 * The function-code methods of a Modbus client (v1.1b3, section 6), written once for RTU and TCP:
 * each builds its request PDU and decodes the answer's data. A subclass supplies the transport:
 * `transact` sends one request PDU and resolves with the answer's data (after the byte count)
 * or, for writes, the echoed PDU, checked against the request.
 */
export abstract class ModbusFunctionCodes {
  protected abstract transact(pdu: Buffer): Promise<Buffer>;

  async readCoils(address: number, length: number): Promise<{ data: boolean[] }> {
    const answer = await this.transact(modbusPdu(1, address, length));
    return { data: withDoubt(answer, bitsFromBytes(answer, length)) };
  }

  async readDiscreteInputs(address: number, length: number): Promise<{ data: boolean[] }> {
    const answer = await this.transact(modbusPdu(2, address, length));
    return { data: withDoubt(answer, bitsFromBytes(answer, length)) };
  }

  async readHoldingRegisters(address: number, length: number): Promise<{ data: number[] }> {
    const answer = await this.transact(modbusPdu(3, address, length));
    return { data: withDoubt(answer, wordsFromBytes(answer)) };
  }

  async readInputRegisters(address: number, length: number): Promise<{ data: number[] }> {
    const answer = await this.transact(modbusPdu(4, address, length));
    return { data: withDoubt(answer, wordsFromBytes(answer)) };
  }

  writeCoil(address: number, state: boolean): Promise<unknown> {
    return this.transact(modbusPdu(5, address, state ? 0xff00 : 0));
  }

  writeCoils(address: number, states: boolean[]): Promise<unknown> {
    return this.transact(writeCoilsPdu(address, states));
  }

  writeRegister(address: number, value: number): Promise<unknown> {
    return this.transact(modbusPdu(6, address, value));
  }

  writeRegisters(address: number, values: number[]): Promise<unknown> {
    return this.transact(writeRegistersPdu(address, values));
  }

  maskWriteRegister(address: number, andMask: number, orMask: number): Promise<unknown> {
    const request = Buffer.alloc(7);
    request.writeUInt8(22, 0);
    request.writeUInt16BE(address, 1);
    request.writeUInt16BE(andMask, 3);
    request.writeUInt16BE(orMask, 5);
    return this.transact(request);
  }
}
