import type { Logger } from "../ports/logger";

/** A logger that discards everything: the default when the host gives none. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
