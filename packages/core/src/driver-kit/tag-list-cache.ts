import type { Tag } from "../domain/tags";

/**
 * A cache of something computed from a tag list (a read plan, compiled decoders), keyed by the array passed to
 * `read()` but hit only while that array still holds the same tags in the same order: a caller that reuses an
 * array and changes it in place (sets an element, sorts, pushes, splices) gets a miss, never the value computed
 * for the array's old contents (adv12 H1). The check is an O(n) identity compare of the tag objects against a
 * copy taken at `set`; a new array holding the same tags is a miss too (computed once more, never wrong).
 * Entries go with their array (a `WeakMap`).
 *
 * @example
 * const plans = new TagListCache<Plan>();
 * const plan = plans.get(tags) ?? plans.set(tags, buildPlan(tags));
 */
export class TagListCache<V> {
  readonly #entries = new WeakMap<readonly Tag[], { readonly tags: readonly Tag[]; readonly value: V }>();

  /** The value stored for `tags`, or `undefined` when none is or the array's contents changed since. */
  get(tags: readonly Tag[]): V | undefined {
    const entry = this.#entries.get(tags);
    if (entry === undefined || !sameTags(entry.tags, tags)) return undefined;
    return entry.value;
  }

  /** Stores `value` for `tags` as they are now (a copy of the list is kept to check later hits); returns `value`. */
  set(tags: readonly Tag[], value: V): V {
    this.#entries.set(tags, { tags: tags.slice(), value });
    return value;
  }
}

function sameTags(a: readonly Tag[], b: readonly Tag[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}
