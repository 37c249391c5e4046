import { KilnError, type Tag } from "@kiln/core";
import { formatModbusAddress, type ModbusAddress, type ModbusByteOrder } from "./modbus-address";
import type { ModbusClient } from "./modbus-client";
import { encodeRegisters, type ModbusRawValue } from "./modbus-codec";
import type { ResolvedModbusDriverOptions } from "./modbus-driver-options";
import { isRetryableException, modbusFailureOf } from "./modbus-failure";

/** Runs one request against unit `unitId` through the driver's queue. */
export type ModbusRequestRunner = <T>(
  unitId: number,
  operation: (client: ModbusClient) => Promise<T>,
  what: string,
  signal: AbortSignal | undefined,
  shape: string,
) => Promise<T>;

/**
 * The shape of a write's answer (its echo): unit, function code, address and what the echo repeats (the
 * value of FC 5 and 6, the masks of FC 22, the quantity of FC 15 and 16). A late echo of another write
 * cannot fit it, a late read answer cannot either (the function differs); see `ModbusRequestOptions.shape`.
 */
function writeShape(unitId: number, functionCode: number, address: number, echoed: string | number): string {
  return `${unitId}/fc${functionCode}/${address}/${echoed}`;
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
 * bit), splits long writes, serialises read-modify-write of bits, and turns a device exception
 * into `KILN_WRITE_REJECTED`.
 */
export class ModbusWriter {
  readonly #options: ResolvedModbusDriverOptions["write"];
  readonly #byteOrder: ModbusByteOrder;
  readonly #request: ModbusRequestRunner;
  #bitWriteLock: Promise<void> = Promise.resolve();

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
    try {
      if (address.area === "coil") {
        await this.#writeCoils(unitId, address.address, [raw === true], what, signal);
      } else if (address.type === "bit") {
        await this.#writeBit(unitId, address, raw === true, what, signal);
      } else {
        const registers = encodeRegisters(raw, address, address.order ?? this.#byteOrder);
        await this.#writeRegisters(unitId, address.address, registers, what, signal);
      }
    } catch (error) {
      throw this.#writeError(error, tag, what);
    }
  }

  #writeError(error: unknown, tag: Tag, what: string): unknown {
    const failure = modbusFailureOf(error);
    if (typeof failure !== "number") return error;
    return new KilnError("KILN_WRITE_REJECTED", `The device refused the ${what}: ${(error as Error).message}`, {
      cause: error,
      retryable: isRetryableException(failure),
      details: { tag: tag.name, modbus: failure, exceptionCode: failure },
    });
  }

  async #writeCoils(
    unitId: number,
    address: number,
    states: boolean[],
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const { singleWriteFunctions, maxCoilsPerWrite } = this.#options;
    if (states.length === 1 && singleWriteFunctions) {
      await this.#request(
        unitId,
        (client) => client.writeCoil(address, states[0]!),
        what,
        signal,
        writeShape(unitId, 5, address, String(states[0])),
      );
      return;
    }
    for (const chunk of chunkWrite(address, states, maxCoilsPerWrite)) {
      await this.#request(
        unitId,
        (client) => client.writeCoils(chunk.address, chunk.values),
        what,
        signal,
        writeShape(unitId, 15, chunk.address, chunk.values.length),
      );
    }
  }

  async #writeRegisters(
    unitId: number,
    address: number,
    registers: number[],
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const { singleWriteFunctions, maxRegistersPerWrite } = this.#options;
    if (registers.length === 1 && singleWriteFunctions) {
      await this.#request(
        unitId,
        (client) => client.writeRegister(address, registers[0]!),
        what,
        signal,
        writeShape(unitId, 6, address, registers[0]!),
      );
      return;
    }
    for (const chunk of chunkWrite(address, registers, maxRegistersPerWrite)) {
      await this.#request(
        unitId,
        (client) => client.writeRegisters(chunk.address, chunk.values),
        what,
        signal,
        writeShape(unitId, 16, chunk.address, chunk.values.length),
      );
    }
  }

  async #writeBit(
    unitId: number,
    address: ModbusAddress,
    state: boolean,
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const mask = 1 << (address.bit ?? 0);
    if (this.#options.bitWriteMode === "mask-write") {
      const andMask = 0xffff & ~mask;
      const orMask = state ? mask : 0;
      await this.#request(
        unitId,
        (client) => client.maskWriteRegister(address.address, andMask, orMask),
        what,
        signal,
        writeShape(unitId, 22, address.address, `${andMask}/${orMask}`),
      );
      return;
    }
    // Read-modify-write is not atomic on the device; serialise it here so two bit writes to one register
    // from this driver cannot lose each other's update.
    const previous = this.#bitWriteLock;
    let release!: () => void;
    this.#bitWriteLock = new Promise<void>((resolve) => (release = resolve));
    try {
      await previous;
      const current = await this.#request(
        unitId,
        (client) => client.readHoldingRegisters(address.address, 1),
        what,
        signal,
        // The same shape as a read of one holding register (the driver's shapeOf): a late answer to one fits it.
        `${unitId}/holding-register/2`,
      );
      const word = current.data[0] ?? 0;
      await this.#writeRegisters(unitId, address.address, [state ? word | mask : word & ~mask & 0xffff], what, signal);
    } finally {
      release();
    }
  }
}
