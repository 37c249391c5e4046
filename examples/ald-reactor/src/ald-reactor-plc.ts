import { type Clock, defineTags, SystemClock } from "@kiln/core";
import { type TimerHandle } from "@kiln/core";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaSimulator } from "@kiln/plc-opcua";
import {
  DEFAULT_REACTOR_PARAMETERS,
  initialReactorState,
  stepReactor,
  type ReactorParameters,
  type ReactorState,
} from "./reactor-model";

const NS = OPCUA_SIMULATOR_NAMESPACE_URI;

/**
 * The reactor's tags, addressed by portable `nsu=` NodeIds on the PLC. Pressure and valves are
 * scanned fast, the heater and counter slower; pressure and temperature are logged on change
 * with a small deadband, so a settled value does not fill the store.
 */
export const aldTags = defineTags({
  "chamber.pressure": {
    dataType: "float64",
    unit: "mbar",
    range: { min: 0, max: 10 },
    scanGroup: "fast",
    description: "Chamber pressure",
    logging: { mode: "change", deadband: { kind: "absolute", value: 0.002 } },
    address: `nsu=${NS};s=Chamber.Pressure`,
  },
  "valve.tma": {
    dataType: "bool",
    access: "readwrite",
    scanGroup: "fast",
    description: "TMA precursor valve",
    address: `nsu=${NS};s=Valve.TMA`,
  },
  "valve.h2o": {
    dataType: "bool",
    access: "readwrite",
    scanGroup: "fast",
    description: "H2O co-reactant valve",
    address: `nsu=${NS};s=Valve.H2O`,
  },
  "heater.temperature": {
    dataType: "float64",
    unit: "°C",
    range: { min: 0, max: 400 },
    scanGroup: "slow",
    description: "Substrate heater temperature",
    logging: { mode: "change", deadband: { kind: "absolute", value: 0.05 } },
    address: `nsu=${NS};s=Heater.Temperature`,
  },
  "heater.setpoint": {
    dataType: "float64",
    unit: "°C",
    range: { min: 0, max: 300 },
    access: "readwrite",
    scanGroup: "slow",
    description: "Substrate heater setpoint",
    address: `nsu=${NS};s=Heater.Setpoint`,
  },
  "reactor.cycles": {
    dataType: "int32",
    scanGroup: "slow",
    description: "ALD cycles counted by the PLC",
    address: `nsu=${NS};s=Reactor.Cycles`,
  },
});

/** Options of {@link AldReactorPlc}. */
export interface AldReactorPlcOptions {
  /** Reactor constants. @default DEFAULT_REACTOR_PARAMETERS */
  readonly parameters?: ReactorParameters;
  /** Heater temperature (and setpoint) at power-on, °C. @default 180 */
  readonly standbyTemperatureC?: number;
  /** How often the physics runs, ms. @default 20 */
  readonly periodMs?: number;
  /** Users the OPC UA server accepts; anonymous sessions are refused when given. */
  readonly users?: readonly { readonly userName: string; readonly password: string }[];
  /** @default SystemClock */
  readonly clock?: Clock;
}

/**
 * A simulated ALD reactor behind a real OPC UA server: an {@link OpcuaSimulator} serving
 * {@link aldTags}, plus a physics loop that reads the valves and heater setpoint the clients
 * wrote (`valueOf`) and writes back pressure, temperature and the cycle counter (`setValue`).
 *
 * The physics keeps running while the server is stopped (a PLC reboot does not stop the
 * chamber), so `server.stop()` / `server.start()` simulate a communication outage on the same
 * port.
 */
export class AldReactorPlc {
  /** The OPC UA server. */
  readonly server: OpcuaSimulator;
  readonly #parameters: ReactorParameters;
  readonly #periodMs: number;
  readonly #clock: Clock;
  #state: ReactorState;
  #lastStepAt = 0;
  #timer: TimerHandle | undefined;
  #ticks = 0;

  constructor(options: AldReactorPlcOptions = {}) {
    this.#parameters = options.parameters ?? DEFAULT_REACTOR_PARAMETERS;
    this.#periodMs = options.periodMs ?? 20;
    this.#clock = options.clock ?? new SystemClock();
    const standby = options.standbyTemperatureC ?? 180;
    this.#state = initialReactorState(standby, this.#parameters);
    const users = options.users ?? [];
    this.server = new OpcuaSimulator({
      tags: aldTags,
      clock: this.#clock,
      users: [...users],
      allowAnonymous: users.length === 0,
    });
    this.server.setValue("heater.setpoint", standby);
    this.#publish();
  }

  /** The reactor's physical state now. */
  get state(): ReactorState {
    return this.#state;
  }

  /** Physics steps run so far. */
  get ticks(): number {
    return this.#ticks;
  }

  /** Starts the OPC UA server and the physics loop. */
  async start(): Promise<void> {
    await this.server.start();
    if (this.#timer === undefined) {
      this.#lastStepAt = this.#clock.now();
      this.#schedule();
    }
  }

  /** Stops the physics loop and the server, and removes the server's temporary PKI. */
  async dispose(): Promise<void> {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.server.dispose();
  }

  /** Runs one physics step now, over the time since the last one. */
  step(): void {
    const now = this.#clock.now();
    const dtMs = Math.max(0, now - this.#lastStepAt);
    this.#lastStepAt = now;
    this.#state = stepReactor(
      this.#state,
      {
        tmaOpen: this.server.valueOf("valve.tma") === true,
        h2oOpen: this.server.valueOf("valve.h2o") === true,
        heaterSetpointC: Number(this.server.valueOf("heater.setpoint")),
      },
      dtMs,
      this.#parameters,
    );
    this.#ticks++;
    this.#publish();
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.step();
      this.#schedule();
    }, this.#periodMs);
  }

  /**
   * Publishes every value with the time of this tick as its source timestamp, changed or not,
   * as a PLC scan does. Besides realism, this lets Kiln see fresh values after a link outage:
   * the core marks tags uncertain with the time of the loss and ignores device samples older
   * than that, so a value whose source timestamp predates the outage would stay uncertain.
   */
  #publish(): void {
    this.server.setValue("chamber.pressure", round(this.#state.pressureMbar, 4));
    this.server.setValue("heater.temperature", round(this.#state.temperatureC, 3));
    this.server.setValue("reactor.cycles", this.#state.cycles);
    for (const tag of CLIENT_WRITTEN) this.server.setValue(tag, this.server.valueOf(tag));
  }
}

/** Tags the recipe writes; the loop only re-stamps them. */
const CLIENT_WRITTEN = ["valve.tma", "valve.h2o", "heater.setpoint"] as const;

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
