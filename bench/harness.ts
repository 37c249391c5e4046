/** Shared helpers for benchmarks: timing loops and machine facts. */
import { fork, type ChildProcess } from "node:child_process";
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

/**
 * Forks `script` under tsx with the workspace source condition (a simulator in another process,
 * so the benchmark measures the client side), and resolves with the child and the first IPC
 * message it sends (its "ready" report).
 */
export function forkReady<TReady>(
  script: string,
  env: Record<string, string>,
  what: string,
): Promise<{ child: ChildProcess; ready: TReady }> {
  const child = fork(script, [], {
    execArgv: ["--conditions=@kiln/source", "--import", "tsx"],
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    child.once("message", (message) => resolve({ child, ready: message as TReady }));
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`${what} process exited early (code ${code})`)));
  });
}

/** Asks a forked child to stop (IPC "stop"), killing it after 5 s if it does not exit. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.send("stop");
  const timer = setTimeout(() => child.kill(), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Runs `scan` back to back for about `durationMs`; returns how many ran and how long it took. */
export async function measureScans(
  scan: () => Promise<void>,
  durationMs: number,
): Promise<{ scans: number; ms: number }> {
  const started = performance.now();
  let scans = 0;
  let elapsed = 0;
  while (elapsed < durationMs) {
    await scan();
    scans++;
    elapsed = performance.now() - started;
  }
  return { scans, ms: elapsed };
}

/**
 * Compares two scan functions fairly: `warmup` scans of each, then `rounds` rounds of about
 * `roundMs` each, alternating which side goes first so neither always runs on a warmer process.
 * Returns scans per second of each side.
 */
export async function compareScans(
  kilnScan: () => Promise<void>,
  baselineScan: () => Promise<void>,
  options: { readonly warmup: number; readonly rounds: number; readonly roundMs: number },
): Promise<{ kiln: number; baseline: number }> {
  for (let index = 0; index < options.warmup; index++) {
    await kilnScan();
    await baselineScan();
  }
  const totals = { kiln: { scans: 0, ms: 0 }, baseline: { scans: 0, ms: 0 } };
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? (["kiln", "baseline"] as const) : (["baseline", "kiln"] as const);
    for (const side of order) {
      const result = await measureScans(side === "kiln" ? kilnScan : baselineScan, options.roundMs);
      totals[side].scans += result.scans;
      totals[side].ms += result.ms;
    }
  }
  return {
    kiln: (totals.kiln.scans * 1_000) / totals.kiln.ms,
    baseline: (totals.baseline.scans * 1_000) / totals.baseline.ms,
  };
}
