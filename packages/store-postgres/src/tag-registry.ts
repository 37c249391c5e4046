import { type Interpolation, type Tag, type TagDataType } from "@kiln/core";
import { interpolationOf } from "@kiln/core/driver-kit";
import { arrayLiteral } from "./sql-array";
import type { SqlQueryable } from "./sql-client";
import type { StoreContext } from "./store-context";

/**
 * The `tags` table and an in-process cache of tag ids. Tags come from the catalog at `open`;
 * a sample of a tag not in the catalog registers the name alone, so nothing is rejected for it.
 */
export class TagRegistry {
  readonly #context: StoreContext;
  readonly #ids = new Map<string, number>();
  readonly #interpolations = new Map<string, Interpolation>();
  readonly #dataTypes = new Map<string, TagDataType>();
  readonly #arrayTags = new Set<string>();

  constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Tag ids by name, for every tag registered or looked up so far. */
  get ids(): ReadonlyMap<string, number> {
    return this.#ids;
  }

  /** Interpolation of each catalog tag registered by {@link register}: the tags history queries accept. */
  get interpolations(): ReadonlyMap<string, Interpolation> {
    return this.#interpolations;
  }

  /** Data type of each catalog tag registered by {@link register}: how an array value is read back. */
  get dataTypes(): ReadonlyMap<string, TagDataType> {
    return this.#dataTypes;
  }

  /** True for a catalog tag with `arrayLength` (docs/adr/0038-array-tags.md): aggregates over it are refused. */
  readonly isArrayTag = (name: string): boolean => this.#arrayTags.has(name);

  /** Inserts or updates the catalog's tags (type, unit, range, description) and caches their ids. */
  async register(client: SqlQueryable, tags: readonly Tag[]): Promise<void> {
    const byName = new Map<string, Tag>();
    for (const tag of tags) byName.set(tag.name, tag);
    if (byName.size === 0) return;
    const list = [...byName.values()];
    const rows = await client.query<{ id: number; name: string }>(
      `INSERT INTO ${this.#context.table("tags")} AS tag (name, data_type, unit, range_min, range_max, description)
       SELECT * FROM unnest($1::text::text[], $2::text::text[], $3::text::text[], $4::text::float8[],
                            $5::text::float8[], $6::text::text[])
       ORDER BY 1
       ON CONFLICT (name) DO UPDATE SET data_type = excluded.data_type, unit = excluded.unit,
         range_min = excluded.range_min, range_max = excluded.range_max,
         description = excluded.description, updated_at = now()
       RETURNING id, name`,
      [
        arrayLiteral(list.map((tag) => tag.name)),
        arrayLiteral(list.map((tag) => tag.dataType)),
        arrayLiteral(list.map((tag) => tag.unit)),
        arrayLiteral(list.map((tag) => tag.range?.min)),
        arrayLiteral(list.map((tag) => tag.range?.max)),
        arrayLiteral(list.map((tag) => tag.description)),
      ],
    );
    for (const row of rows.rows) this.#ids.set(row.name, row.id);
    for (const tag of list) {
      this.#interpolations.set(tag.name, interpolationOf(tag));
      this.#dataTypes.set(tag.name, tag.dataType);
      if (tag.arrayLength === undefined) this.#arrayTags.delete(tag.name);
      else this.#arrayTags.add(tag.name);
    }
  }

  /** Makes sure every name in `names` has an id, registering unknown names without metadata. */
  async ensure(client: SqlQueryable, names: Iterable<string>): Promise<void> {
    const missing: string[] = [];
    for (const name of names) if (!this.#ids.has(name)) missing.push(name);
    if (missing.length === 0) return;
    const literal = arrayLiteral(missing.sort());
    await client.query(
      `INSERT INTO ${this.#context.table("tags")} (name)
       SELECT unnest($1::text::text[]) ORDER BY 1 ON CONFLICT (name) DO NOTHING`,
      [literal],
    );
    const rows = await client.query<{ id: number; name: string }>(
      `SELECT id, name FROM ${this.#context.table("tags")} WHERE name = ANY($1::text::text[])`,
      [literal],
    );
    for (const row of rows.rows) this.#ids.set(row.name, row.id);
  }

  /** Forgets every cached id (on close: another database may be opened next). */
  clear(): void {
    this.#ids.clear();
    this.#interpolations.clear();
    this.#dataTypes.clear();
    this.#arrayTags.clear();
  }
}
