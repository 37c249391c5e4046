import { spawn, type ChildProcess } from "node:child_process";
import { waitFor } from "./pipeline";

/**
 * A TypeScript script of faults/support run in a child Node process (`--conditions=@kiln/source
 * --import tsx`), so a case can kill it, and what it reports: every stdout line `health <json>`
 * replaces {@link last}, a line `final <json>` sets {@link final}.
 */
export class ReportingProcess<THealth, TFinal = THealth> {
  readonly child: ChildProcess;
  last: THealth | undefined;
  /** `Date.now()` when the first `health` line came (the process is up), else undefined. */
  firstReportAt: number | undefined;
  final: TFinal | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #name: string;
  #stderr = "";

  /** Starts `script` (an absolute path) with `args`; `name` says which process in errors. */
  constructor(name: string, script: string, args: readonly string[]) {
    this.#name = name;
    this.child = spawn(process.execPath, ["--conditions=@kiln/source", "--import", "tsx", script, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let buffer = "";
    this.child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        const match = /^(health|final) (.*)$/.exec(line);
        if (!match) continue;
        if (match[1] === "final") this.final = JSON.parse(match[2]!) as TFinal;
        else {
          this.last = JSON.parse(match[2]!) as THealth;
          this.firstReportAt ??= Date.now();
        }
      }
    });
    this.child.stderr!.on("data", (chunk: Buffer) => (this.#stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
  }

  /** What the process wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Waits until the last printed health satisfies `condition`; throws when the process exits first. */
  async until(what: string, condition: (health: THealth) => boolean, timeoutMs?: number): Promise<void> {
    try {
      await this.#until(what, condition, timeoutMs);
    } catch (error) {
      throw new Error(`${(error as Error).message}; last reported: ${JSON.stringify(this.last)}`, { cause: error });
    }
  }

  #until(what: string, condition: (health: THealth) => boolean, timeoutMs?: number): Promise<void> {
    return waitFor(
      `${this.#name}: ${what}`,
      () => {
        if (this.child.exitCode !== null || this.child.signalCode !== null)
          throw new Error(`${this.#name} exited early: ${this.#stderr}`);
        return this.last !== undefined && condition(this.last);
      },
      timeoutMs,
    );
  }

  /** Sends SIGTERM and waits for the exit; throws unless it exits 0 having printed `final`. */
  async finish(): Promise<TFinal> {
    this.child.kill("SIGTERM");
    const { code, signal } = await this.exited;
    if (code !== 0 || this.final === undefined)
      throw new Error(`${this.#name} ended with ${signal ?? code} without a final report: ${this.#stderr}`);
    return this.final;
  }

  /** Kills the process (SIGKILL, as a crash) and waits until it is gone. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}
