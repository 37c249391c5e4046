import { KilnError, type Tag } from "@kiln/core";
import { raceAbort } from "@kiln/core/driver-kit";
import { formatModbusAddress, type ModbusAddress, type ModbusByteOrder } from "./modbus-address";
import type { ModbusClient } from "./modbus-client";
import { answerDoubt } from "./modbus-answer-repeat";
import { encodeRegisters, type ModbusRawValue } from "./modbus-codec";
import type { ResolvedModbusDriverOptions } from "./modbus-driver-options";
import {
  exceptionName,
  gatewayMayAnswerLate,
  isLateException,
  isRetryableException,
  modbusFailureOf,
} from "./modbus-failure";

/** How the writer reaches the device: the driver's queue, with its late-answer guard. */
export interface ModbusRequestRunner {
  /**
   * Runs one write against unit `unitId`; `shape` is its echo's shape without the unit (`writeShape`), the
   * driver adds the unit where answers carry it reliably.
   */
  request<T>(
    unitId: number,
    operation: (client: ModbusClient) => Promise<T>,
    what: string,
    signal: AbortSignal | undefined,
    shape: string,
  ): Promise<T>;
  /**
   * Reads `count` registers at `address` of `area` of unit `unitId` the way a scan reads them (same shape,
   * same fence behind a gateway that holds a late answer back): the read half of a read-modify-write. `again`:
   * the same read right after the first (its check), sent without a separator between them (see the queue's
   * `separateShapes`): the two reads' agreement is the check there.
   */
  read(
    unitId: number,
    area: "holding-register",
    address: number,
    count: number,
    what: string,
    signal: AbortSignal | undefined,
    again?: boolean,
  ): Promise<boolean[] | number[]>;
}

/** One `ModbusWriter.write` call: what it is, its caller's signal, and whether a write request of it was sent. */
interface WriteCall {
  readonly what: string;
  readonly signal: AbortSignal | undefined;
  sent: boolean;
}

/**
 * The error of a write with `details.sent`: `false` when no write request of it went on the wire (refused
 * before sending: a read-modify-write's read failed, a fence proved nothing, the caller aborted while it
 * waited, the connection was down), so the device's value is untouched; `true` when one did (it may have
 * taken effect even when its answer did not come). The one place every write error gets it.
 */
function withSent(error: unknown, sent: boolean): unknown {
  if (!KilnError.is(error)) return error;
  if (error.details.sent === sent) return error;
  const message = sent || error.message.includes("not sent") ? error.message : `${error.message} (not sent)`;
  return new KilnError(error.code, message, {
    cause: error.cause ?? error,
    retryable: error.retryable,
    details: { ...error.details, sent },
  });
}

/**
 * The shape of a write's answer (its echo): function code, address and what the echo repeats (the value of
 * FC 5 and 6, the masks of FC 22, the quantity of FC 15 and 16). A late echo of another write cannot fit it,
 * a late read answer cannot either (the function differs); see `ModbusRequestOptions.shape`. Starts with
 * `fc<code>/`, the shape of an exception answer to it.
 */
function writeShape(functionCode: number, address: number, echoed: string | number): string {
  return `fc${functionCode}/${address}/${echoed}`;
}

/** Splits `values` starting at `address` into chunks of at most `max`. */
export function chunkWrite<TValue>(
  address: number,
  values: readonly TValue[],
  max: number,
): { address: number; values: TValue[] }[] {
  const chunks: { address: number; values: TValue[] }[] = [];
  for (let offset = 0; offset < values.length; offset += max) {
    chunks.push({ address: address + offset, values: values.slice(offset, offset + max) });
  }
  return chunks;
}

/**
 * The write path of the Modbus driver: picks the function codes (5/6 or 15/16, 22 for a masked
 * bit), splits long writes, orders every write to a register after the writes before it on that register (a bit's
 * read-modify-write is not atomic), and turns a device exception
 * into `KILN_WRITE_REJECTED`.
 */
export class ModbusWriter {
  readonly #options: ResolvedModbusDriverOptions["write"];
  readonly #byteOrder: ModbusByteOrder;
  readonly #request: ModbusRequestRunner;
  /** Per `unit/register`: the end of the last write queued on it (see {@link ModbusWriter.#inRegisterOrder}). */
  readonly #registerTails = new Map<string, Promise<void>>();

  constructor(options: ResolvedModbusDriverOptions["write"], byteOrder: ModbusByteOrder, request: ModbusRequestRunner) {
    this.#options = options;
    this.#byteOrder = byteOrder;
    this.#request = request;
  }

  /**
   * Writes `raw` (already range-checked and scaled) to `address` of unit `unitId`.
   * @throws KilnError `KILN_WRITE_REJECTED` (device exception, `details.exceptionCode`), or the
   *   request's own error (`KILN_TIMEOUT`, `KILN_CONNECTION_FAILED`...).
   */
  async write(
    tag: Tag,
    address: ModbusAddress,
    raw: ModbusRawValue,
    unitId: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const what = `write of "${tag.name}" (${formatModbusAddress(address)})`;
    const call: WriteCall = { what, signal, sent: false };
    try {
      if (address.area === "coil") {
        await this.#writeCoils(unitId, address.address, [raw === true], call);
      } else if (address.type === "bit") {
        await this.#inRegisterOrder(unitId, address.address, 1, call, () =>
          this.#writeBit(unitId, address, raw === true, call),
        );
      } else {
        const registers = encodeRegisters(raw, address, address.order ?? this.#byteOrder);
        await this.#inRegisterOrder(unitId, address.address, registers.length, call, () =>
          this.#writeRegisters(unitId, address.address, registers, call),
        );
      }
    } catch (error) {
      // A client that says it never wrote the request (`details.sent: false`) is believed over `call.sent`.
      const written = call.sent && !(KilnError.is(error) && error.details.sent === false);
      throw withSent(this.#writeError(error, tag, what, written), written);
    }
  }

  /** Sends one write request of `call`, noting in `call.sent` that a write went on the wire. */
  #send(unitId: number, operation: (client: ModbusClient) => Promise<unknown>, call: WriteCall, shape: string) {
    return this.#request.request(
      unitId,
      (client) => {
        call.sent = true;
        return operation(client);
      },
      call.what,
      call.signal,
      shape,
    );
  }

  /**
   * Runs `write` after every earlier write of this driver touching one of the `count` registers from `address` of
   * unit `unitId` has ended. A bit's read-modify-write is not atomic on the device: a word write (or a mask write,
   * or another bit) landing between its read and its write would be overwritten by the stale word (adv12 fix12e
   * M1: HR5.3 and HR5 = 256 both OK, HR5 ended 8). One lock per register orders them all; the tails are taken in
   * one synchronous step, so writes spanning several registers cannot deadlock. While waiting, the caller's signal
   * is heeded: an abort rejects at once with `KILN_ABORTED` (nothing sent; adv12b LOW: it was ignored until the
   * lock came), and the write's place in the order is kept until the earlier writes end, so later ones still wait
   * for those.
   */
  async #inRegisterOrder(
    unitId: number,
    address: number,
    count: number,
    call: WriteCall,
    write: () => Promise<void>,
  ): Promise<void> {
    const keys = Array.from({ length: count }, (_, index) => `${unitId}/${address + index}`);
    const earlier = Promise.all(keys.flatMap((key) => this.#registerTails.get(key) ?? []));
    let release!: () => void;
    const tail = new Promise<void>((resolve) => (release = resolve));
    for (const key of keys) this.#registerTails.set(key, tail);
    const done = (): void => {
      release();
      for (const key of keys) if (this.#registerTails.get(key) === tail) this.#registerTails.delete(key);
    };
    try {
      await raceAbort(earlier, call.signal, `${call.what}, waiting for earlier writes to its registers,`);
    } catch (error) {
      void earlier.then(done);
      throw error;
    }
    try {
      await write();
    } finally {
      done();
    }
  }

  #writeError(error: unknown, tag: Tag, what: string, sent: boolean): unknown {
    const failure = modbusFailureOf(error);
    if (typeof failure !== "number") return error;
    // A gateway's exception (it gave up waiting for the device) refuses nothing: the write may have reached the
    // device and taken effect, as after a timeout (adv12i LOW-1). So may a 4 or 6 later than the unit's usual answer
    // time, which queued gateways answer their serial timeout with too (fix12k; the request queue marks it).
    const gatewayCode = gatewayMayAnswerLate(failure);
    const outcomeUnknown = gatewayCode || isLateException(error);
    const gaveUp = gatewayCode
      ? "the gateway gave up waiting for the device"
      : "it came later than the device's usual answer time, as a gateway answers when it gave up waiting for the device";
    if (outcomeUnknown && !sent)
      // The read half of a read-modify-write got it (adv12j LOW-1): nothing was written.
      return new KilnError(
        "KILN_TIMEOUT",
        `The ${what} was not sent: reading its register first got exception ${failure} (${exceptionName(failure)}); ${gaveUp}; nothing was written, retry as is. ${(error as Error).message}`,
        {
          cause: error,
          retryable: true,
          details: { tag: tag.name, modbus: failure, exceptionCode: failure, sent: false },
        },
      );
    if (outcomeUnknown)
      return new KilnError(
        "KILN_TIMEOUT",
        `The ${what} got exception ${failure} (${exceptionName(failure)}): ${gaveUp}, so the write may have reached it and taken effect; read ${tag.name} back before writing again. ${(error as Error).message}`,
        {
          cause: error,
          retryable: true,
          details: {
            ...(KilnError.is(error) ? error.details : {}),
            tag: tag.name,
            modbus: failure,
            exceptionCode: failure,
          },
        },
      );
    return new KilnError("KILN_WRITE_REJECTED", `The device refused the ${what}: ${(error as Error).message}`, {
      cause: error,
      retryable: isRetryableException(failure),
      details: { tag: tag.name, modbus: failure, exceptionCode: failure },
    });
  }

  async #writeCoils(unitId: number, address: number, states: boolean[], call: WriteCall): Promise<void> {
    const { singleWriteFunctions, maxCoilsPerWrite } = this.#options;
    if (states.length === 1 && singleWriteFunctions) {
      await this.#send(
        unitId,
        (client) => client.writeCoil(address, states[0]!),
        call,
        writeShape(5, address, String(states[0])),
      );
      return;
    }
    for (const chunk of chunkWrite(address, states, maxCoilsPerWrite)) {
      await this.#send(
        unitId,
        (client) => client.writeCoils(chunk.address, chunk.values),
        call,
        writeShape(15, chunk.address, chunk.values.length),
      );
    }
  }

  async #writeRegisters(unitId: number, address: number, registers: number[], call: WriteCall): Promise<void> {
    const { singleWriteFunctions, maxRegistersPerWrite } = this.#options;
    if (registers.length === 1 && singleWriteFunctions) {
      await this.#send(
        unitId,
        (client) => client.writeRegister(address, registers[0]!),
        call,
        writeShape(6, address, registers[0]!),
      );
      return;
    }
    for (const chunk of chunkWrite(address, registers, maxRegistersPerWrite)) {
      await this.#send(
        unitId,
        (client) => client.writeRegisters(chunk.address, chunk.values),
        call,
        writeShape(16, chunk.address, chunk.values.length),
      );
    }
  }

  async #writeBit(unitId: number, address: ModbusAddress, state: boolean, call: WriteCall): Promise<void> {
    const mask = 1 << (address.bit ?? 0);
    if (this.#options.bitWriteMode === "mask-write") {
      const andMask = 0xffff & ~mask;
      const orMask = state ? mask : 0;
      await this.#send(
        unitId,
        (client) => client.maskWriteRegister(address.address, andMask, orMask),
        call,
        writeShape(22, address.address, `${andMask}/${orMask}`),
      );
      return;
    }
    // Read-modify-write is not atomic on the device: the caller holds the register's lock (#inRegisterOrder).
    // Read the way a scan reads (shape and fence): a late answer to a read of one register fits this one.
    // Named as the read it is: a timeout said "No reply to write of ..." although no write had gone out (fix12aa).
    const readWhat = `the read half of the ${call.what} (the register is read before its bit is written; nothing written yet)`;
    // Read twice, back to back, and write only when both agree (ADR 0041, amendment fix12ab). A repeated answer (a
    // gateway's or repeater's retransmission) or an out-of-order late one can shift the answers of same-shape reads
    // by one, with nothing on the frame to tell: the first read then holds the request before's value, another
    // register's. The second read then holds the first one's own answer, this register's: two values that agree
    // are this register's (or the other register held the same word, which writes the same), two that differ are
    // refused, never written back. One more request per bit write; `bitWriteMode: "mask-write"` needs no read.
    const first = await this.#readHalf(unitId, address.address, readWhat, call, false);
    const second = await this.#readHalf(unitId, address.address, readWhat, call, true);
    if (first !== second)
      throw new KilnError(
        "KILN_DEVICE_ERROR",
        `The ${call.what} was not sent: its register was read twice to change one bit and the two reads disagree ` +
          `(${first}, then ${second}). One of them may be another request's answer (a repeated or late answer ` +
          `shifts the answers on a serial line or a gateway to one), or the device changed the register meanwhile; ` +
          `writing the word back could change the register's other bits. Write again, or set ` +
          `write.bitWriteMode: "mask-write" (function 22) if the device supports it.`,
        { retryable: true, details: { sent: false, reads: [first, second] } },
      );
    const word = second;
    await this.#writeRegisters(unitId, address.address, [state ? word | mask : word & ~mask & 0xffff], call);
  }

  /** One read of the register of a bit write's read-modify-write (see `#writeBit`): its word, or a refusal if doubtful. */
  async #readHalf(unitId: number, address: number, readWhat: string, call: WriteCall, again: boolean): Promise<number> {
    const current = await this.#request.read(unitId, "holding-register", address, 1, readWhat, call.signal, again);
    const doubt = answerDoubt(current);
    if (doubt !== undefined) {
      // Writing a word back that may be another register's would change the register's other bits.
      throw new KilnError(
        "KILN_DEVICE_ERROR",
        `The read half of the ${call.what} is not trusted: ${doubt}; write again.`,
        {
          retryable: true,
          details: { sent: false },
        },
      );
    }
    return Number(current[0] ?? 0);
  }
}
