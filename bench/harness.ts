/** Shared helpers for benchmarks: timing loops and machine facts. */
import { cpus } from "node:os";

/** Runs `body` repeatedly for about `durationMs` after a warm-up; returns operations per second. */
export async function opsPerSecond(
  body: () => void | Promise<void>,
  options: { durationMs?: number; warmupMs?: number; batch?: number } = {},
): Promise<number> {
  const { durationMs = 1_000, warmupMs = 200, batch = 1 } = options;
  const warmupEnd = performance.now() + warmupMs;
  while (performance.now() < warmupEnd) await body();
  let operations = 0;
  const start = performance.now();
  let now = start;
  while (now - start < durationMs) {
    await body();
    operations += batch;
    now = performance.now();
  }
  return (operations * 1_000) / (now - start);
}

/** Synchronous variant of {@link opsPerSecond} for hot loops (no await per iteration). */
export function opsPerSecondSync(
  body: () => void,
  options: { durationMs?: number; warmupMs?: number; inner?: number } = {},
): number {
  const { durationMs = 1_000, warmupMs = 200, inner = 1_000 } = options;
  const warmupEnd = performance.now() + warmupMs;
  while (performance.now() < warmupEnd) for (let i = 0; i < inner; i++) body();
  let operations = 0;
  const start = performance.now();
  let now = start;
  while (now - start < durationMs) {
    for (let i = 0; i < inner; i++) body();
    operations += inner;
    now = performance.now();
  }
  return (operations * 1_000) / (now - start);
}

/** Machine facts printed with every result, so figures can be compared. */
export function machine(): Record<string, unknown> {
  return { node: process.version, cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length };
}

/** Rounds for printing. */
export function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
