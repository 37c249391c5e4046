/** A log method: `(message)` or `(fields, message)`, as pino has it. */
export interface LogMethod {
  /** Logs `message` alone. */
  (message: string): void;
  /** Logs structured `fields` (serializable values) with an optional `message`. */
  (fields: Record<string, unknown>, message?: string): void;
}

/** A structured logger with pino's shape, so a host can pass its pino instance as is. */
export interface Logger {
  /** Logs at debug level: detail for troubleshooting (a failed reconnect attempt). */
  debug: LogMethod;
  /** Logs at info level: normal but notable events (a connection restored). */
  info: LogMethod;
  /** Logs at warn level: a handled failure (a failed scan read, a retried batch). */
  warn: LogMethod;
  /** Logs at error level: a failure that loses data or needs attention (a batch the store rejected). */
  error: LogMethod;
  /** A logger that adds `bindings` to every line. */
  child(bindings: Record<string, unknown>): Logger;
}

/** The methods every {@link Logger} has. */
const LOGGER_METHODS = ["debug", "info", "warn", "error", "child"] as const;

/**
 * Whether `value` is a {@link Logger}: an object with the functions `debug`, `info`, `warn`, `error` and `child`.
 * Drivers validate their `logger` option with it, so a logger missing one is refused up front (`KILN_VALIDATION`
 * naming `logger`) instead of throwing a `TypeError` at first use.
 */
export function isLogger(value: unknown): value is Logger {
  return (
    typeof value === "object" &&
    value !== null &&
    LOGGER_METHODS.every((method) => typeof (value as Record<string, unknown>)[method] === "function")
  );
}
