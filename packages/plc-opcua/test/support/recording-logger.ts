import type { Logger } from "@kiln/core";

/** One line logged through a {@link RecordingLogger}. */
export interface LogLine {
  readonly level: "debug" | "info" | "warn" | "error";
  readonly message: string;
  readonly fields: Record<string, unknown>;
}

/** A Logger that keeps every line, so tests can assert on what was logged. */
export class RecordingLogger implements Logger {
  readonly lines: LogLine[];
  readonly #bindings: Record<string, unknown>;

  constructor(lines: LogLine[] = [], bindings: Record<string, unknown> = {}) {
    this.lines = lines;
    this.#bindings = bindings;
  }

  debug = this.#method("debug");
  info = this.#method("info");
  warn = this.#method("warn");
  error = this.#method("error");

  child(bindings: Record<string, unknown>): Logger {
    return new RecordingLogger(this.lines, { ...this.#bindings, ...bindings });
  }

  /** Every line serialised, for "this secret never appears" checks. */
  text(): string {
    return this.lines.map((line) => `${line.level} ${line.message} ${safeJson(line.fields)}`).join("\n");
  }

  #method(level: LogLine["level"]) {
    return (first: string | Record<string, unknown>, message?: string): void => {
      if (typeof first === "string") this.lines.push({ level, message: first, fields: { ...this.#bindings } });
      else this.lines.push({ level, message: message ?? "", fields: { ...this.#bindings, ...first } });
    };
  }
}

function safeJson(value: unknown): string {
  return JSON.stringify(value, (_key, field: unknown) =>
    field instanceof Error ? { message: field.message, stack: field.stack, cause: String(field.cause) } : field,
  );
}
