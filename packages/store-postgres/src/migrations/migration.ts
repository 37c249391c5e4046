/** One versioned schema change. Applied once, in version order, recorded in `kiln_migrations`. */
export interface Migration {
  /** Positive, increasing, never reused. */
  readonly version: number;
  /** What it does, in words (recorded with it). */
  readonly name: string;
  /**
   * The statements, for the given schema (already validated and double-quoted, e.g. `"kiln"`).
   * They run in one transaction with the others of the same `migrate()` call.
   */
  statements(schema: string): readonly string[];
}
