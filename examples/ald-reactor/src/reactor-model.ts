/**
 * The physics of a small ALD (atomic layer deposition) reactor, as a pure step function. It is
 * deliberately simple, but every value responds to the commands the recipe gives:
 *
 * - Chamber pressure relaxes exponentially toward a target. With every valve closed the pump
 *   holds the base pressure (purge: decay with `purgeTimeConstantMs`). An open precursor valve
 *   adds its partial pressure (rise with `riseTimeConstantMs`); both valves open at once add
 *   both, which is what the HIHI interlock is there for.
 * - The TMA plateau creeps up by `tmaDriftPerCycle` per completed cycle (a warming bubbler
 *   delivers a little more precursor each time), so late cycles can cross the HI alarm.
 * - The heater follows its setpoint as a first-order lag.
 * - A cycle is counted when the H2O valve closes after a TMA pulse.
 */

/** Constants of the reactor. Pressures in mbar, temperatures in °C, times in ms. */
export interface ReactorParameters {
  /** Pressure the pump holds with every valve closed. */
  readonly basePressureMbar: number;
  /** Pressure plateau with the TMA valve open (before drift). */
  readonly tmaPressureMbar: number;
  /** Pressure plateau with the H2O valve open. */
  readonly h2oPressureMbar: number;
  /** Relative rise of the TMA plateau per completed cycle (0.01 = +1 % per cycle). */
  readonly tmaDriftPerCycle: number;
  /** Time constant of the pressure rise while a valve is open. */
  readonly riseTimeConstantMs: number;
  /** Time constant of the pressure decay while purging (every valve closed). */
  readonly purgeTimeConstantMs: number;
  /** Time constant of the heater. */
  readonly heaterTimeConstantMs: number;
}

/** The commands the reactor reads from its PLC. */
export interface ReactorInputs {
  /** TMA (trimethylaluminium) precursor valve. */
  readonly tmaOpen: boolean;
  /** H2O (water) co-reactant valve. */
  readonly h2oOpen: boolean;
  /** Heater setpoint, °C. */
  readonly heaterSetpointC: number;
}

/** The reactor's state: its process values and the edge memory of its valves. */
export interface ReactorState {
  /** Chamber pressure, mbar. */
  readonly pressureMbar: number;
  /** Heater (substrate) temperature, °C. */
  readonly temperatureC: number;
  /** TMA valve state seen at the previous step. */
  readonly tmaOpen: boolean;
  /** H2O valve state seen at the previous step. */
  readonly h2oOpen: boolean;
  /** TMA pulses seen (valve opening edges). */
  readonly tmaPulses: number;
  /** H2O pulses seen (valve opening edges). */
  readonly h2oPulses: number;
  /** Completed cycles: H2O valve closings that followed a TMA pulse. */
  readonly cycles: number;
  /** True between a TMA pulse and the H2O pulse that completes its cycle. */
  readonly tmaDosed: boolean;
}

/** Defaults of {@link ReactorParameters}: a TMA plateau of 1 mbar that reaches about 1.23 mbar by cycle 30. */
export const DEFAULT_REACTOR_PARAMETERS: ReactorParameters = Object.freeze({
  basePressureMbar: 0.2,
  tmaPressureMbar: 1.0,
  h2oPressureMbar: 0.8,
  tmaDriftPerCycle: 0.008,
  riseTimeConstantMs: 25,
  purgeTimeConstantMs: 80,
  heaterTimeConstantMs: 500,
});

/** A reactor at rest: base pressure, every valve closed, heater at `temperatureC`. */
export function initialReactorState(
  temperatureC: number,
  parameters: ReactorParameters = DEFAULT_REACTOR_PARAMETERS,
): ReactorState {
  return {
    pressureMbar: parameters.basePressureMbar,
    temperatureC,
    tmaOpen: false,
    h2oOpen: false,
    tmaPulses: 0,
    h2oPulses: 0,
    cycles: 0,
    tmaDosed: false,
  };
}

/** The pressure the chamber tends to for the given valves, after `cycles` completed cycles. */
export function targetPressure(
  inputs: Pick<ReactorInputs, "tmaOpen" | "h2oOpen">,
  cycles: number,
  parameters: ReactorParameters = DEFAULT_REACTOR_PARAMETERS,
): number {
  const base = parameters.basePressureMbar;
  const tma = parameters.tmaPressureMbar * (1 + parameters.tmaDriftPerCycle * cycles);
  return base + (inputs.tmaOpen ? tma - base : 0) + (inputs.h2oOpen ? parameters.h2oPressureMbar - base : 0);
}

/**
 * Advances the reactor by `dtMs` with the valves and setpoint of `inputs` (held over the step).
 * Exact for first-order lags, so the result does not depend on how the time is sliced.
 * Valve edges are taken at the start of the step.
 *
 * @throws RangeError when `dtMs` is negative or not finite.
 */
export function stepReactor(
  state: ReactorState,
  inputs: ReactorInputs,
  dtMs: number,
  parameters: ReactorParameters = DEFAULT_REACTOR_PARAMETERS,
): ReactorState {
  if (!Number.isFinite(dtMs) || dtMs < 0) throw new RangeError(`dtMs must be a finite number >= 0, got ${dtMs}`);
  const tmaOpened = inputs.tmaOpen && !state.tmaOpen;
  const h2oOpened = inputs.h2oOpen && !state.h2oOpen;
  const h2oClosed = !inputs.h2oOpen && state.h2oOpen;
  let tmaDosed = state.tmaDosed || tmaOpened;
  let cycles = state.cycles;
  if (h2oClosed && tmaDosed) {
    cycles++;
    tmaDosed = false;
  }
  const target = targetPressure(inputs, state.cycles, parameters);
  const anyOpen = inputs.tmaOpen || inputs.h2oOpen;
  const pressureTau = anyOpen ? parameters.riseTimeConstantMs : parameters.purgeTimeConstantMs;
  return {
    pressureMbar: relax(state.pressureMbar, target, dtMs, pressureTau),
    temperatureC: relax(state.temperatureC, inputs.heaterSetpointC, dtMs, parameters.heaterTimeConstantMs),
    tmaOpen: inputs.tmaOpen,
    h2oOpen: inputs.h2oOpen,
    tmaPulses: state.tmaPulses + (tmaOpened ? 1 : 0),
    h2oPulses: state.h2oPulses + (h2oOpened ? 1 : 0),
    cycles,
    tmaDosed,
  };
}

/** First-order lag from `value` toward `target` over `dtMs` with time constant `tauMs`. */
function relax(value: number, target: number, dtMs: number, tauMs: number): number {
  if (tauMs <= 0) return target;
  return value + (target - value) * -Math.expm1(-dtMs / tauMs);
}
