import { z } from "zod";
import type { TagValue } from "../domain/tags";
import { parseOrThrow } from "../domain/validation";

/** zod schema of a {@link SignalSpec}, for a simulator that takes signals in its own options schema. */
export const signalSpecSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("constant"), value: z.union([z.number(), z.boolean(), z.string()]) }),
  z.object({
    kind: z.literal("ramp"),
    from: z.number(),
    to: z.number(),
    periodMs: z.number().positive(),
  }),
  z.object({
    kind: z.literal("sine"),
    amplitude: z.number(),
    offset: z.number().default(0),
    periodMs: z.number().positive(),
  }),
  z.object({ kind: z.literal("counter"), start: z.number().int().default(0), step: z.number().int().default(1) }),
  z.object({
    kind: z.literal("random-walk"),
    start: z.number(),
    step: z.number().positive(),
    min: z.number(),
    max: z.number(),
    seed: z.number().int().default(1),
  }),
  z.object({ kind: z.literal("square"), low: z.number(), high: z.number(), periodMs: z.number().positive() }),
]);

/**
 * How a simulated tag's value evolves: `constant`, `ramp` (sawtooth from→to each period),
 * `sine`, `counter` (advances by `step` on every evaluation: a per-tag sequence number),
 * `random-walk` (seeded, bounded) or `square`.
 */
export type SignalSpec =
  | {
      /** Always `value`. */
      readonly kind: "constant";
      readonly value: number | boolean | string;
    }
  | {
      /** A sawtooth: from `from` to `to` over each `periodMs` (ms, > 0), then back to `from`. */
      readonly kind: "ramp";
      readonly from: number;
      readonly to: number;
      readonly periodMs: number;
    }
  | {
      /** `offset + amplitude * sin(2 pi t / periodMs)`; `periodMs` in ms, > 0; `offset` @default 0. */
      readonly kind: "sine";
      readonly amplitude: number;
      readonly offset?: number | undefined;
      readonly periodMs: number;
    }
  | {
      /** `start` (integer, @default 0), then `+ step` (integer, @default 1) on every evaluation. */
      readonly kind: "counter";
      readonly start?: number | undefined;
      readonly step?: number | undefined;
    }
  | {
      /** From `start`, a seeded random step of at most `step` (> 0) per evaluation, kept within `min`..`max`; `seed` integer @default 1. */
      readonly kind: "random-walk";
      readonly start: number;
      readonly step: number;
      readonly min: number;
      readonly max: number;
      readonly seed?: number | undefined;
    }
  | {
      /** `high` for the first half of each `periodMs` (ms, > 0), `low` for the second. */
      readonly kind: "square";
      readonly low: number;
      readonly high: number;
      readonly periodMs: number;
    };

/** A signal generator: the value at time `t` (ms since epoch). Stateful kinds advance per call. */
export type Signal = (t: number) => TagValue;

/**
 * Creates a deterministic generator from a spec. Used by `SimulatedPlc` and by every
 * protocol simulator, so a tag behaves the same whichever simulator serves it.
 * @throws `KilnValidationError` (`KILN_VALIDATION`) naming every bad field of `input`.
 */
export function createSignal(input: SignalSpec, origin = 0): Signal {
  const spec = parseOrThrow(signalSpecSchema, input, "signal");
  switch (spec.kind) {
    case "constant":
      return () => spec.value;
    case "ramp":
      return (t) => {
        const phase = (((t - origin) % spec.periodMs) + spec.periodMs) % spec.periodMs;
        return spec.from + ((spec.to - spec.from) * phase) / spec.periodMs;
      };
    case "sine":
      return (t) => spec.offset + spec.amplitude * Math.sin((2 * Math.PI * (t - origin)) / spec.periodMs);
    case "square":
      return (t) => {
        const phase = (((t - origin) % spec.periodMs) + spec.periodMs) % spec.periodMs;
        return phase < spec.periodMs / 2 ? spec.high : spec.low;
      };
    case "counter": {
      let next = spec.start;
      return () => {
        const value = next;
        next += spec.step;
        return value;
      };
    }
    case "random-walk": {
      let value = spec.start;
      let state = spec.seed >>> 0 || 1;
      return () => {
        // xorshift32: deterministic for a given seed.
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        state >>>= 0;
        const unit = state / 0x1_0000_0000;
        value = Math.min(spec.max, Math.max(spec.min, value + (unit * 2 - 1) * spec.step));
        return value;
      };
    }
  }
}
