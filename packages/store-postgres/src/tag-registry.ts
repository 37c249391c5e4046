import { type Interpolation, type Tag, type TagDataType } from "@kiln/core";
import { interpolationOf } from "@kiln/core/driver-kit";
import { arrayLiteral } from "./sql-array";
import type { SqlQueryable } from "./sql-client";
import type { StoreContext } from "./store-context";

/**
 * The `tags` table and an in-process cache of tag ids. Tags come from the catalog at `open`;
 * a sample of a tag not in the catalog registers the name alone, so nothing is rejected for it.
 *
 * The catalog's ids are kept for as long as the store is open (history queries need them). Ids of
 * names met only in samples (a Sparkplug host's metrics, renamed ones included) are kept in a
 * bounded cache of two generations: at most `maxCachedNames` of them, the least recently used
 * dropped first; a dropped name costs one lookup in the `tags` table when it comes again
 * (adversarial review 19: the cache grew by every name ever written).
 */
export class TagRegistry {
  readonly #context: StoreContext;
  readonly #catalogIds = new Map<string, number>();
  /** Ids of names outside the catalog used since the last rotation, and before it. */
  #recent = new Map<string, number>();
  #older = new Map<string, number>();
  readonly #generationSize: number;
  readonly #interpolations = new Map<string, Interpolation>();
  readonly #dataTypes = new Map<string, TagDataType>();
  readonly #arrayTags = new Set<string>();

  /** @param maxCachedNames how many ids of names outside the catalog are cached, at least 2. */
  constructor(context: StoreContext, maxCachedNames: number = DEFAULT_MAX_CACHED_NAMES) {
    this.#context = context;
    this.#generationSize = Math.max(1, Math.floor(maxCachedNames / 2));
  }

  /** Ids of the catalog's tags (those registered by {@link register}), by name. */
  get catalogIds(): ReadonlyMap<string, number> {
    return this.#catalogIds;
  }

  /** How many ids of names outside the catalog are cached now (at most `maxCachedNames`). */
  get cachedNames(): number {
    return this.#recent.size + this.#older.size;
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
    for (const row of rows.rows) {
      this.#catalogIds.set(row.name, row.id);
      this.#recent.delete(row.name);
      this.#older.delete(row.name);
    }
    for (const tag of list) {
      this.#interpolations.set(tag.name, interpolationOf(tag));
      this.#dataTypes.set(tag.name, tag.dataType);
      if (tag.arrayLength === undefined) this.#arrayTags.delete(tag.name);
      else this.#arrayTags.add(tag.name);
    }
  }

  /**
   * The id of each sample's tag, by position in `samples`, registering unknown names without
   * metadata. The array is the caller's own: a name the bounded cache drops meanwhile keeps its id
   * there. One lookup per sample (a batch's names are not gathered in a map of their own: in a
   * large catalog each map operation costs a cache miss; issue 16).
   */
  async idsOf(client: SqlQueryable, samples: readonly { readonly tag: string }[]): Promise<Int32Array> {
    const ids = new Int32Array(samples.length);
    let missing: Map<string, number[]> | undefined;
    for (let position = 0; position < samples.length; position++) {
      const name = samples[position]!.tag;
      const id = this.#cached(name);
      if (id !== undefined) {
        ids[position] = id;
        continue;
      }
      missing ??= new Map();
      const positions = missing.get(name);
      if (positions === undefined) missing.set(name, [position]);
      else positions.push(position);
    }
    if (missing === undefined) return ids;
    const literal = arrayLiteral([...missing.keys()].sort());
    await client.query(
      `INSERT INTO ${this.#context.table("tags")} (name)
       SELECT unnest($1::text::text[]) ORDER BY 1 ON CONFLICT (name) DO NOTHING`,
      [literal],
    );
    const rows = await client.query<{ id: number; name: string }>(
      `SELECT id, name FROM ${this.#context.table("tags")} WHERE name = ANY($1::text::text[])`,
      [literal],
    );
    for (const row of rows.rows) {
      for (const position of missing.get(row.name) ?? []) ids[position] = row.id;
      missing.delete(row.name);
      this.#remember(row.name, row.id);
    }
    if (missing.size > 0) throw new Error(`tag "${missing.keys().next().value!}" has no id after registering it`);
    return ids;
  }

  /** The cached id of `name`, if any; a name of the older generation moves to the recent one. */
  #cached(name: string): number | undefined {
    const id = this.#catalogIds.get(name) ?? this.#recent.get(name);
    if (id !== undefined) return id;
    const older = this.#older.get(name);
    if (older !== undefined) this.#remember(name, older);
    return older;
  }

  /**
   * Caches the id of a name outside the catalog. When the recent generation is full, it becomes
   * the older one and the older one is dropped whole: no per-entry eviction, no `Map` deletes.
   */
  #remember(name: string, id: number): void {
    if (this.#catalogIds.has(name)) return;
    if (this.#recent.size >= this.#generationSize) {
      this.#older = this.#recent;
      this.#recent = new Map();
    }
    this.#recent.set(name, id);
  }

  /** Forgets every cached id (on close: another database may be opened next). */
  clear(): void {
    this.#catalogIds.clear();
    this.#recent = new Map();
    this.#older = new Map();
    this.#interpolations.clear();
    this.#dataTypes.clear();
    this.#arrayTags.clear();
  }
}

/** Ids of names outside the catalog cached by default (about 100 bytes each for 60-character names). */
export const DEFAULT_MAX_CACHED_NAMES = 100_000;
