import { KilnError } from "@kiln/core";
import { type RecipeRepository } from "@kiln/core/driver-kit";
import { type StoredRecipe } from "@kiln/core/driver-kit";
import { invalid, IssueCollector } from "./input-checks";
import { jsonText, millisecondsOf, parseJsonText, timestampOf } from "./sql-expressions";
import type { StoreContext } from "./store-context";

interface RecipeRow {
  readonly name: string;
  readonly version: number;
  readonly definition: string;
  readonly saved_at: number;
}

/**
 * Immutable recipe versions in the `recipes` table, keyed by (name, version). Definitions are
 * compared as `jsonb`, so key order and number spelling do not make two definitions differ.
 */
export class PostgresRecipeRepository implements RecipeRepository {
  readonly #context: StoreContext;

  constructor(context: StoreContext) {
    this.#context = context;
  }

  /**
   * Saves one version. Saving the identical definition again is a no-op (the first `savedAt`
   * stays); a different definition under an existing (name, version) rejects with
   * `KILN_ALREADY_EXISTS`.
   */
  async save(recipe: StoredRecipe): Promise<void> {
    this.#context.client();
    const issues = new IssueCollector();
    if (typeof recipe !== "object" || recipe === null) issues.add("", "must be a recipe object");
    else {
      issues.string("name", recipe.name);
      issues.integer("version", recipe.version, 1);
      issues.record("definition", recipe.definition);
      issues.finite("savedAt", recipe.savedAt);
    }
    issues.throwIfAny("recipe");
    const definition = jsonText(recipe.definition);
    await this.#context.run("recipes.save", async (client) => {
      const inserted = await client.query(
        `INSERT INTO ${this.#context.table("recipes")} (name, version, definition, saved_at)
         VALUES ($1, $2, $3::text::jsonb, ${timestampOf("$4")})
         ON CONFLICT (name, version) DO NOTHING`,
        [recipe.name, recipe.version, definition, recipe.savedAt],
      );
      if (inserted.rowCount === 1) return;
      const existing = await client.query<{ same: boolean }>(
        `SELECT definition = $3::text::jsonb AS same FROM ${this.#context.table("recipes")}
         WHERE name = $1 AND version = $2`,
        [recipe.name, recipe.version, definition],
      );
      if (existing.rows[0]?.same === true) return;
      throw new KilnError(
        "KILN_ALREADY_EXISTS",
        `Recipe "${recipe.name}" version ${recipe.version} exists with another definition: save it as a new version.`,
        { details: { name: recipe.name, version: recipe.version } },
      );
    });
  }

  /** The given version, or the latest when `version` is omitted; undefined when absent. */
  async get(name: string, version?: number): Promise<StoredRecipe | undefined> {
    this.#context.client();
    if (typeof name !== "string") throw new TypeError("name must be a string");
    if (version !== undefined && !Number.isInteger(version)) {
      throw invalid("recipe lookup", "version", "must be an integer");
    }
    const rows = await this.#context.run("recipes.get", (client) =>
      version === undefined
        ? client.query<RecipeRow>(`${this.#select()} WHERE name = $1 ORDER BY version DESC LIMIT 1`, [name])
        : client.query<RecipeRow>(`${this.#select()} WHERE name = $1 AND version = $2`, [name, version]),
    );
    const row = rows.rows[0];
    return row === undefined ? undefined : toRecipe(row);
  }

  /** Every saved version, ordered by name (code point order) then version. */
  async list(): Promise<StoredRecipe[]> {
    this.#context.client();
    const rows = await this.#context.run("recipes.list", (client) =>
      client.query<RecipeRow>(`${this.#select()} ORDER BY name COLLATE "C", version`),
    );
    return rows.rows.map(toRecipe);
  }

  #select(): string {
    return `SELECT name, version, definition::text AS definition, ${millisecondsOf("saved_at")} AS saved_at
            FROM ${this.#context.table("recipes")}`;
  }
}

function toRecipe(row: RecipeRow): StoredRecipe {
  return {
    name: row.name,
    version: row.version,
    definition: parseJsonText(row.definition) as Record<string, unknown>,
    savedAt: row.saved_at,
  };
}
