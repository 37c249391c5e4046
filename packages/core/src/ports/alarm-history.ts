/** One alarm state transition, as recorded in the alarm history. */
export interface AlarmHistoryEntry {
  /** The alarm's id (e.g. `chamber.pressure:HI`). */
  readonly alarmId: string;
  /** The tag it watches. */
  readonly tag: string;
  /** HI, LO, HIHI, LOLO or BOOL. */
  readonly kind: string;
  /** Priority (1 highest). */
  readonly priority: number;
  /** ISA-18.2 state before. */
  readonly from: string;
  /** ISA-18.2 state after. */
  readonly to: string;
  /** What moved it (`process-value`, `acknowledge`, `shelve`, `timer`...). */
  readonly cause: string;
  /** The value that caused it, where one did. */
  readonly value?: number | boolean | null;
  /** Who, for operator actions. */
  readonly principal?: string;
  /** When, ms since epoch. */
  readonly at: number;
}

/** A time range `[from, to)` in ms since epoch. */
export interface TimeRange {
  /** Start, inclusive, ms since epoch. */
  readonly from: number;
  /** End, exclusive, ms since epoch. */
  readonly to: number;
}

/** Persists alarm transitions. Entries come back in time order; ties in the order recorded. */
export interface AlarmHistory {
  /** Appends one transition. */
  record(entry: AlarmHistoryEntry): Promise<void>;
  /** Transitions in `[from, to)`, oldest first. */
  query(range: TimeRange): Promise<AlarmHistoryEntry[]>;
}
