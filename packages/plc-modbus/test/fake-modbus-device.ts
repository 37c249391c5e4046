import type { ModbusClient, ModbusSerialOptions } from "../src/modbus-client";

/** One call a fake client received. */
export interface FakeCall {
  readonly method: string;
  readonly unitId: number;
  readonly args: readonly unknown[];
}

type Behaviour = "answer" | "silent" | { readonly exception: number };

/**
 * An in-process stand-in for a Modbus device and modbus-serial's client, for unit tests on a simulated
 * clock: shared memory, a log of every call, and switches for refusing connections, going silent and
 * answering with exceptions.
 */
export class FakeModbusDevice {
  readonly holding = new Uint16Array(65536);
  readonly input = new Uint16Array(65536);
  readonly coils = new Uint8Array(65536);
  readonly discrete = new Uint8Array(65536);
  readonly calls: FakeCall[] = [];
  readonly clients: FakeModbusClient[] = [];
  /** How connection attempts end. */
  connectBehaviour: "accept" | "refuse" | "hang" = "accept";
  /** How requests are answered; a function decides per call. */
  behaviour: Behaviour | ((call: FakeCall) => Behaviour) = "answer";

  /** The factory to pass as `clientFactory`. */
  readonly factory = (): ModbusClient => {
    const client = new FakeModbusClient(this);
    this.clients.push(client);
    return client;
  };

  /** The client of the current connection. */
  get current(): FakeModbusClient | undefined {
    return this.clients[this.clients.length - 1];
  }

  /** Requests only (no connects). */
  get requests(): FakeCall[] {
    return this.calls.filter((call) => !call.method.startsWith("connect"));
  }

  behaviourFor(call: FakeCall): Behaviour {
    return typeof this.behaviour === "function" ? this.behaviour(call) : this.behaviour;
  }
}

/** A fake modbus-serial client bound to a {@link FakeModbusDevice}. */
export class FakeModbusClient implements ModbusClient {
  isOpen = false;
  destroyed = false;
  #unitId = 1;
  readonly #device: FakeModbusDevice;
  readonly #listeners = new Map<string, ((argument?: unknown) => unknown)[]>();

  constructor(device: FakeModbusDevice) {
    this.#device = device;
  }

  connectTCP(host: string, options: { port: number }): Promise<void> {
    return this.#connect("connectTCP", [host, options.port]);
  }

  connectRTUBuffered(path: string, options: ModbusSerialOptions): Promise<void> {
    return this.#connect("connectRTUBuffered", [path, options]);
  }

  setID(id: number): void {
    this.#unitId = id;
  }

  readCoils(address: number, length: number): Promise<{ data: boolean[] }> {
    return this.#request("readCoils", [address, length], () => ({
      data: Array.from(this.#device.coils.subarray(address, address + length), (bit) => bit === 1),
    }));
  }

  readDiscreteInputs(address: number, length: number): Promise<{ data: boolean[] }> {
    return this.#request("readDiscreteInputs", [address, length], () => ({
      data: Array.from(this.#device.discrete.subarray(address, address + length), (bit) => bit === 1),
    }));
  }

  readHoldingRegisters(address: number, length: number): Promise<{ data: number[] }> {
    return this.#request("readHoldingRegisters", [address, length], () => ({
      data: Array.from(this.#device.holding.subarray(address, address + length)),
    }));
  }

  readInputRegisters(address: number, length: number): Promise<{ data: number[] }> {
    return this.#request("readInputRegisters", [address, length], () => ({
      data: Array.from(this.#device.input.subarray(address, address + length)),
    }));
  }

  writeCoil(address: number, state: boolean): Promise<unknown> {
    return this.#request("writeCoil", [address, state], () => {
      this.#device.coils[address] = state ? 1 : 0;
    });
  }

  writeCoils(address: number, states: boolean[]): Promise<unknown> {
    return this.#request("writeCoils", [address, states], () => {
      states.forEach((state, offset) => (this.#device.coils[address + offset] = state ? 1 : 0));
    });
  }

  writeRegister(address: number, value: number): Promise<unknown> {
    return this.#request("writeRegister", [address, value], () => {
      this.#device.holding[address] = value;
    });
  }

  writeRegisters(address: number, values: number[]): Promise<unknown> {
    return this.#request("writeRegisters", [address, values], () => {
      this.#device.holding.set(values, address);
    });
  }

  maskWriteRegister(address: number, andMask: number, orMask: number): Promise<unknown> {
    return this.#request("maskWriteRegister", [address, andMask, orMask], () => {
      const current = this.#device.holding[address]!;
      this.#device.holding[address] = (current & andMask) | (orMask & ~andMask);
    });
  }

  destroy(callback: () => void): void {
    this.isOpen = false;
    this.destroyed = true;
    callback();
  }

  on(event: "close", listener: () => unknown): unknown;
  on(event: "error", listener: (error: unknown) => unknown): unknown;
  on(event: string, listener: (argument?: unknown) => unknown): unknown {
    const list = this.#listeners.get(event) ?? [];
    list.push(listener);
    this.#listeners.set(event, list);
    return this;
  }

  /** Simulates the device closing the connection. */
  emitClose(): void {
    this.isOpen = false;
    for (const listener of this.#listeners.get("close") ?? []) listener();
  }

  #connect(method: string, args: unknown[]): Promise<void> {
    this.#device.calls.push({ method, unitId: this.#unitId, args });
    switch (this.#device.connectBehaviour) {
      case "refuse":
        return Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
      case "hang":
        return new Promise<void>(() => undefined);
      default:
        this.isOpen = true;
        return Promise.resolve();
    }
  }

  #request<T>(method: string, args: unknown[], answer: () => T): Promise<T> {
    if (!this.isOpen) {
      return Promise.reject(Object.assign(new Error("Port Not Open"), { errno: "ECONNREFUSED" }));
    }
    const call: FakeCall = { method, unitId: this.#unitId, args };
    this.#device.calls.push(call);
    const behaviour = this.#device.behaviourFor(call);
    if (behaviour === "silent") return new Promise<T>(() => undefined);
    if (typeof behaviour === "object") {
      const error = Object.assign(new Error(`Modbus exception ${behaviour.exception}`), {
        modbusCode: behaviour.exception,
      });
      return Promise.reject(error);
    }
    return Promise.resolve(answer());
  }
}
