import ModbusRTU from "modbus-serial";
import { KilnError } from "@kiln/core";

/** Serial line settings for Modbus RTU. */
export interface ModbusSerialOptions {
  /** @default 9600 */
  readonly baudRate?: number;
  /** @default 8 */
  readonly dataBits?: 5 | 6 | 7 | 8;
  /** @default 1 */
  readonly stopBits?: 1 | 2;
  /** @default "none" */
  readonly parity?: "none" | "even" | "odd" | "mark" | "space";
}

/**
 * The part of modbus-serial's `ModbusRTU` client the driver uses. Pass your own (a wrapped or instrumented
 * client) through `ModbusDriverOptions.clientFactory`.
 */
export interface ModbusClient {
  /** Opens a Modbus TCP connection. */
  connectTCP(host: string, options: { port: number }): Promise<void>;
  /** Opens a serial port for Modbus RTU (needs the optional `serialport` package). */
  connectRTUBuffered(path: string, options: ModbusSerialOptions): Promise<void>;
  /** Sets the unit id of the next requests. */
  setID(id: number): void;
  /** Whether the transport is open. */
  readonly isOpen: boolean;
  /** Function code 1. */
  readCoils(address: number, length: number): Promise<{ data: boolean[] }>;
  /** Function code 2. */
  readDiscreteInputs(address: number, length: number): Promise<{ data: boolean[] }>;
  /** Function code 3. */
  readHoldingRegisters(address: number, length: number): Promise<{ data: number[] }>;
  /** Function code 4. */
  readInputRegisters(address: number, length: number): Promise<{ data: number[] }>;
  /** Function code 5. */
  writeCoil(address: number, state: boolean): Promise<unknown>;
  /** Function code 15. */
  writeCoils(address: number, states: boolean[]): Promise<unknown>;
  /** Function code 6. */
  writeRegister(address: number, value: number): Promise<unknown>;
  /** Function code 16. */
  writeRegisters(address: number, values: number[]): Promise<unknown>;
  /** Function code 22. */
  maskWriteRegister(address: number, andMask: number, orMask: number): Promise<unknown>;
  /** Drops the connection at once. */
  destroy(callback: () => void): void;
  /** Calls `listener` when the transport closes. */
  on(event: "close", listener: () => unknown): unknown;
  /** Calls `listener` with the error when the transport fails. */
  on(event: "error", listener: (error: unknown) => unknown): unknown;
}

/** Creates modbus-serial's client. */
export function createModbusSerialClient(): ModbusClient {
  return new ModbusRTU();
}

/** Loads a module by name; replaced in tests. */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

const importModule: ModuleImporter = (specifier) => import(specifier);

/**
 * Checks that Modbus RTU can run: the optional `serialport` package and its native bindings load.
 * @throws KilnError `KILN_NOT_SUPPORTED` saying how to install serial support when they do not.
 */
export async function loadSerialSupport(importer: ModuleImporter = importModule): Promise<void> {
  // The specifier is a variable so bundlers and TypeScript leave the optional dependency alone.
  const specifier = "serialport";
  let loaded: unknown;
  try {
    loaded = await importer(specifier);
  } catch (error) {
    throw serialNotSupported(error);
  }
  const serialPort = (loaded as { SerialPort?: unknown } | undefined)?.SerialPort;
  if (typeof serialPort !== "function") throw serialNotSupported(new Error("serialport has no SerialPort export"));
}

function serialNotSupported(cause: unknown): KilnError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new KilnError(
    "KILN_NOT_SUPPORTED",
    `Modbus RTU needs serial port support, which could not be loaded (${reason}). Install it next to ` +
      "@kiln/plc-modbus with `npm install serialport` (its native bindings need a prebuilt binary for your " +
      "platform or a C++ toolchain), or use Modbus TCP.",
    { cause, details: { transport: "rtu", package: "serialport" } },
  );
}
