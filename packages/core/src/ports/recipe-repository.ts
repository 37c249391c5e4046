/** A saved recipe version: its name, version number and its definition as JSON. */
export interface StoredRecipe {
  /** The recipe's name (non-empty); with `version`, the key of a saved recipe. */
  readonly name: string;
  /** Positive integer; versions of one name are immutable once saved. */
  readonly version: number;
  /** The recipe definition (JSON-serialisable; validated by the recipe schema before saving). */
  readonly definition: Readonly<Record<string, unknown>>;
  /** When it was saved, ms since epoch. */
  readonly savedAt: number;
}

/**
 * Stores recipe versions immutably.
 *
 * Contract: saving a (name, version) that exists with a different definition rejects with
 * `KILN_ALREADY_EXISTS`; saving the identical definition again is a no-op.
 */
export interface RecipeRepository {
  /** Saves one immutable recipe version. */
  save(recipe: StoredRecipe): Promise<void>;
  /** The given version, or the latest when `version` is omitted; undefined when absent. */
  get(name: string, version?: number): Promise<StoredRecipe | undefined>;
  /** Every saved version, ordered by name then version. */
  list(): Promise<StoredRecipe[]>;
}
