import { type Clock } from "@kiln/core";
import { type TimerHandle } from "@kiln/core";

/** What the progress line shows. */
export interface ProgressSnapshot {
  /** The cycle running now (1-based; 0 before the first). */
  readonly cycle: number;
  readonly cycles: number;
  /** The recipe step running now, in words. */
  readonly step: string;
  readonly pressureMbar?: number;
  readonly temperatureC?: number;
  /** True when the current values are not of good quality. */
  readonly stale?: boolean;
  readonly alarms: number;
  readonly link: string;
  readonly elapsedMs: number;
}

/** Where progress goes: `process.stdout` fits. */
export interface ProgressOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

/** Options of {@link ProgressLine}. */
export interface ProgressLineOptions {
  readonly output: ProgressOutput;
  readonly clock: Clock;
  /** Reads the current state. */
  readonly read: () => ProgressSnapshot;
  /** Redraw period on a terminal, ms. @default 100 */
  readonly redrawMs?: number;
  /** Period of plain lines when the output is not a terminal, ms. @default 2000 */
  readonly lineMs?: number;
  /** Width of the bar in characters. @default 24 */
  readonly barWidth?: number;
}

/**
 * One line of progress: a bar, the cycle, the step, live pressure and temperature, alarms and
 * the PLC link, e.g. `[#########...] cycle 12/30  TMA pulse  1.021 mbar  199.9 °C  alarms 0  link online  16.2 s`.
 */
export function formatProgress(snapshot: ProgressSnapshot, barWidth = 24): string {
  const fraction = snapshot.cycles > 0 ? Math.min(1, Math.max(0, snapshot.cycle / snapshot.cycles)) : 0;
  const filled = Math.round(fraction * barWidth);
  const bar = `[${"#".repeat(filled)}${".".repeat(barWidth - filled)}]`;
  const pressure = snapshot.pressureMbar === undefined ? "  -   " : snapshot.pressureMbar.toFixed(3);
  const temperature = snapshot.temperatureC === undefined ? "  -  " : snapshot.temperatureC.toFixed(1);
  const width = String(snapshot.cycles).length;
  return [
    bar,
    `cycle ${String(snapshot.cycle).padStart(width)}/${snapshot.cycles}`,
    snapshot.step.padEnd(22).slice(0, 22),
    `${pressure} mbar`,
    `${temperature} °C${snapshot.stale ? " (stale)" : ""}`,
    `alarms ${snapshot.alarms}`,
    `link ${snapshot.link}`,
    `${(snapshot.elapsedMs / 1_000).toFixed(1)} s`,
  ].join("  ");
}

/**
 * Keeps a progress line on screen: redrawn in place (`\r`) when the output is a terminal,
 * printed as plain periodic lines otherwise (logs, CI).
 */
export class ProgressLine {
  readonly #options: ProgressLineOptions;
  readonly #tty: boolean;
  #timer: TimerHandle | undefined;
  #drawn = false;

  constructor(options: ProgressLineOptions) {
    this.#options = options;
    this.#tty = options.output.isTTY === true;
  }

  /** Starts drawing. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#draw();
    this.#schedule();
  }

  /** Prints a line of its own above the progress line. */
  note(text: string): void {
    if (this.#tty && this.#drawn) {
      this.#options.output.write(`\r\x1b[K${text}\n`);
      this.#draw();
    } else {
      this.#options.output.write(`${text}\n`);
    }
  }

  /** Draws a last time and stops. */
  stop(): void {
    if (this.#timer === undefined) return;
    this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#draw();
    if (this.#tty) this.#options.output.write("\n");
  }

  #schedule(): void {
    const period = this.#tty ? (this.#options.redrawMs ?? 100) : (this.#options.lineMs ?? 2_000);
    this.#timer = this.#options.clock.setTimeout(() => {
      this.#draw();
      this.#schedule();
    }, period);
  }

  #draw(): void {
    const line = formatProgress(this.#options.read(), this.#options.barWidth);
    this.#options.output.write(this.#tty ? `\r${line}\x1b[K` : `${line}\n`);
    this.#drawn = true;
  }
}
