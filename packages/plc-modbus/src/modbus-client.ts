import { KilnError } from "@kiln/core";

/** Serial line settings for Modbus RTU. */
export interface ModbusSerialOptions {
  /** @default 9600 */
  readonly baudRate?: number;
  /** Data bits per character (Modbus RTU uses 8). @default 8 */
  readonly dataBits?: 5 | 6 | 7 | 8;
  /** Stop bits per character (Modbus over serial line, §2.5.1: 1 with parity, 2 without). @default 1 */
  readonly stopBits?: 1 | 2;
  /** @default "none" */
  readonly parity?: "none" | "even" | "odd" | "mark" | "space";
}

/**
 * The client the driver talks through: the part of modbus-serial's `ModbusRTU` API it uses. The driver's own
 * TCP and RTU clients implement it; pass your own (a wrapped or instrumented client, or modbus-serial's
 * `ModbusRTU`, which does not check answers against their requests) through `ModbusDriverOptions.clientFactory`.
 */
export interface ModbusClient {
  /** Opens a Modbus TCP connection. */
  connectTCP(host: string, options: { port: number }): Promise<void>;
  /** Opens a serial port for Modbus RTU. */
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
  /**
   * Holds writes back until the returned release is called, so frames written meanwhile leave together (Modbus TCP
   * only; see `ModbusTcpClient.holdWrites`). Optional: a client without it writes each frame at once.
   */
  holdWrites?(): () => void;
  /** Drops the connection at once. */
  destroy(callback: () => void): void;
  /** Calls `listener` when the transport closes. */
  on(event: "close", listener: () => unknown): unknown;
  /** Calls `listener` with the error when the transport fails. */
  on(event: "error", listener: (error: unknown) => unknown): unknown;
  /**
   * Optional: calls `listener` with the reason whenever an answer is dropped without being taken by a request
   * (its transaction id belongs to no request waiting, or it did not fit a patient request) or refused by the
   * request waiting with its transaction id (`answer.refused`), with the answer itself when it was a whole
   * frame. A client without it leaves such answers unseen: a duplicate answer is then not detected. Without
   * `answer` a dropped answer accounts for any answer owed, of whatever shape.
   */
  onStray?(listener: (reason: string, answer?: ModbusStrayAnswer) => void): void;
  /**
   * Optional: makes the next request patient (an answer that does not fit it is dropped as `stray` and the
   * request keeps waiting for its own). Used for fences; without it a fence's answer that does not fit fails it.
   */
  patientNext?(): void;
}

/** An answer a {@link ModbusClient} did not deliver as a request's result (see {@link ModbusClient.onStray}). */
export interface ModbusStrayAnswer {
  /** The unit id its frame carries. */
  readonly unitId: number;
  /** Its PDU: the function code, then the data (Modbus application protocol v1.1b3, section 4.1). */
  readonly pdu: Buffer;
  /**
   * `true`: the request waiting with its transaction id refused it as not fitting (and failed); `false`: no
   * request took it.
   */
  readonly refused: boolean;
}

/** Loads a module by name; replaced in tests. */
type ModuleImporter = (specifier: string) => Promise<unknown>;

const importModule: ModuleImporter = (specifier) => import(specifier);

/** serialport's `SerialPort` class, as the RTU client constructs it. */
export type SerialPortConstructor = new (options: { path: string; autoOpen: boolean } & ModbusSerialOptions) => unknown;

/**
 * Loads serial port support for Modbus RTU: the `serialport` package (installed with modbus-serial as its
 * optional dependency) and its native binding (`@serialport/bindings-cpp`, shipped prebuilt for Linux, macOS
 * and Windows on x64 and arm).
 * @returns serialport's `SerialPort` class.
 * @throws KilnError `KILN_NOT_SUPPORTED` saying what helps when it does not load.
 */
export async function loadSerialSupport(
  importer: (specifier: string) => Promise<unknown> = importModule,
): Promise<SerialPortConstructor> {
  // The specifier is a variable so bundlers and TypeScript leave the optional dependency alone.
  const specifier = "serialport";
  let loaded: unknown;
  try {
    loaded = await importer(specifier);
  } catch (error) {
    throw serialNotSupported(error);
  }
  // An ES module import gives `SerialPort` at the top; a CommonJS build seen through a bundler's interop
  // puts it under `default`.
  const module = loaded as { SerialPort?: unknown; default?: { SerialPort?: unknown } } | undefined;
  const serialPort = module?.SerialPort ?? module?.default?.SerialPort;
  if (typeof serialPort !== "function") throw serialNotSupported(new Error("serialport has no SerialPort export"));
  return serialPort as SerialPortConstructor;
}

function serialNotSupported(cause: unknown): KilnError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const missingPackage = /Cannot find (module|package) ['"]?serialport/.test(reason);
  const help = missingPackage
    ? "serialport is an optional dependency of modbus-serial and was left out of this install " +
      "(npm --omit=optional or --no-optional, or a bundler that dropped it): reinstall without that flag, " +
      "or add it with `npm install serialport`."
    : "serialport is installed but its native binding did not load. It ships prebuilt for Linux, macOS and " +
      "Windows on x64 and arm; on another platform or libc run `npm rebuild @serialport/bindings-cpp` with " +
      "a C++ toolchain and Python installed. Check that the binding's Node ABI matches this Node.";
  return new KilnError(
    "KILN_NOT_SUPPORTED",
    `Modbus RTU needs serial port support, which could not be loaded (${reason}). ${help} Or use Modbus TCP.`,
    { cause, details: { transport: "rtu", package: missingPackage ? "serialport" : "@serialport/bindings-cpp" } },
  );
}
