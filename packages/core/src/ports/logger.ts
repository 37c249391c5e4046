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
