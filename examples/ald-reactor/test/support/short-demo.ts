import type { AldDemoOptions } from "../../src/ald-demo";

/** A short demo for tests: 3 cycles of 120 ms pulses, a quick heater, a 0.5 s outage in fault mode. */
export const shortDemo = {
  cycles: 3,
  timing: { pulseMs: 120, purgeMs: 200, holdMs: 600, heatUpMs: 300, outageMs: 500, ackDelayMs: 50 },
  reactor: { heaterTimeConstantMs: 100 },
} as const satisfies AldDemoOptions;
