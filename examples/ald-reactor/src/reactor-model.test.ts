import { describe, expect, test } from "vitest";
import {
  DEFAULT_REACTOR_PARAMETERS as P,
  initialReactorState,
  stepReactor,
  targetPressure,
  type ReactorInputs,
  type ReactorState,
} from "./reactor-model";

const closed: ReactorInputs = { tmaOpen: false, h2oOpen: false, heaterSetpointC: 200 };
const tma: ReactorInputs = { ...closed, tmaOpen: true };
const h2o: ReactorInputs = { ...closed, h2oOpen: true };

/** Runs `inputs` for `durationMs` in steps of `stepMs`. */
function run(state: ReactorState, inputs: ReactorInputs, durationMs: number, stepMs = 10): ReactorState {
  let current = state;
  for (let elapsed = 0; elapsed < durationMs; elapsed += stepMs) current = stepReactor(current, inputs, stepMs);
  return current;
}

describe("stepReactor", () => {
  test("a precursor pulse raises the pressure toward its plateau, and the purge brings it back to base", () => {
    const start = initialReactorState(200);
    const pulsed = run(start, tma, 150);
    expect(pulsed.pressureMbar).toBeGreaterThan(0.99 * P.tmaPressureMbar);
    expect(pulsed.pressureMbar).toBeLessThanOrEqual(P.tmaPressureMbar);
    const purged = run(pulsed, closed, 600);
    expect(purged.pressureMbar).toBeGreaterThan(P.basePressureMbar);
    expect(purged.pressureMbar).toBeLessThan(P.basePressureMbar + 0.01);
  });

  test("the pressure rises monotonically during a pulse and decays monotonically during the purge", () => {
    let state = initialReactorState(200);
    const values: number[] = [];
    for (let index = 0; index < 15; index++) values.push((state = stepReactor(state, tma, 10)).pressureMbar);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    const decay: number[] = [];
    for (let index = 0; index < 30; index++) decay.push((state = stepReactor(state, closed, 10)).pressureMbar);
    expect(decay).toEqual([...decay].sort((a, b) => b - a));
  });

  test("the result does not depend on how time is sliced", () => {
    const start = initialReactorState(150);
    const coarse = stepReactor(start, tma, 120);
    const fine = run(start, tma, 120, 1);
    expect(fine.pressureMbar).toBeCloseTo(coarse.pressureMbar, 9);
    expect(fine.temperatureC).toBeCloseTo(coarse.temperatureC, 9);
  });

  test("the heater follows its setpoint as a first-order lag: 63 % of the step after one time constant", () => {
    const start = initialReactorState(100);
    const after = stepReactor(start, { ...closed, heaterSetpointC: 200 }, P.heaterTimeConstantMs);
    expect(after.temperatureC).toBeCloseTo(100 + 100 * (1 - Math.exp(-1)), 6);
    expect(run(after, { ...closed, heaterSetpointC: 200 }, 10 * P.heaterTimeConstantMs, 50).temperatureC).toBeCloseTo(
      200,
      1,
    );
  });

  test("valve opening edges count pulses, and an H2O pulse after a TMA pulse completes a cycle", () => {
    let state = initialReactorState(200);
    for (let cycle = 0; cycle < 3; cycle++) {
      state = run(state, tma, 50);
      state = run(state, closed, 50);
      state = run(state, h2o, 50);
      state = run(state, closed, 50);
    }
    expect(state).toMatchObject({ tmaPulses: 3, h2oPulses: 3, cycles: 3 });
    // An H2O pulse with no TMA dose before it is not a cycle.
    state = run(run(state, h2o, 50), closed, 50);
    expect(state).toMatchObject({ h2oPulses: 4, cycles: 3 });
  });

  test("the TMA plateau drifts up with completed cycles; both valves open add both partial pressures", () => {
    expect(targetPressure(tma, 0)).toBeCloseTo(P.tmaPressureMbar, 9);
    expect(targetPressure(tma, 25)).toBeCloseTo(P.tmaPressureMbar * (1 + 25 * P.tmaDriftPerCycle), 9);
    expect(targetPressure(h2o, 25)).toBeCloseTo(P.h2oPressureMbar, 9);
    expect(targetPressure({ tmaOpen: true, h2oOpen: true }, 0)).toBeCloseTo(
      P.tmaPressureMbar + P.h2oPressureMbar - P.basePressureMbar,
      9,
    );
    expect(targetPressure({ tmaOpen: false, h2oOpen: false }, 10)).toBe(P.basePressureMbar);
  });

  test("a zero step changes no process value; a negative or infinite step is a RangeError", () => {
    const start = initialReactorState(180);
    expect(stepReactor(start, tma, 0)).toMatchObject({ pressureMbar: start.pressureMbar, temperatureC: 180 });
    expect(() => stepReactor(start, tma, -1)).toThrow(RangeError);
    expect(() => stepReactor(start, tma, Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});
