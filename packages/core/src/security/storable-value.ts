import { createHash } from "node:crypto";
import { cutText, visibleText } from "./command-input";
/** Longest comment a command accepts, in UTF-16 code units. */
export const COMMENT_MAX_LENGTH = 1000;

/** Deepest nesting kept in an audit value; deeper parts become `"[too deep]"`. */
const MAX_DEPTH = 16;
/** Most nodes (values, keys' values, elements) kept in one audit value; the rest become `"[truncated]"`. */
const MAX_NODES = 10_000;
/** Longest string kept in an audit value; a longer one is cut and marked. */
const MAX_STRING = 10_000;
/** Most characters (strings and keys together) kept in one audit value; later strings are cut and marked. */
const MAX_CHARS = 100_000;
/** Longest object key kept; a longer one is cut and marked. */
const MAX_KEY = 256;
/** Characters the cut marks may add past {@link MAX_CHARS}; strings after that become `"[truncated]"`. */
const MAX_MARK_CHARS = 10_000;

interface Budget {
  nodes: number;
  chars: number;
  /** SHA-256 of each string cut so far: a string given many times is hashed once (adv15o MEDIUM-4). */
  readonly hashes: Map<string, string>;
}

/**
 * A storable snapshot of a caller-controlled audit value (a tag write's value, a recipe's
 * parameters, a previous value), taken once when the entry is made, so every store and the
 * backlog journal hold the same data. Never throws. Kept as they are: null, booleans, numbers,
 * bigints and strings up to 10,000 code units (100,000 in the whole value; keys up to 256). Plain data is copied: arrays and objects (own
 * enumerable string keys; getters read once) up to 16 levels deep and 10,000 nodes. Marker
 * strings replace what cannot be stored: `"[circular]"`, `"[too deep]"`, `"[truncated]"`,
 * `"[unreadable: reason]"` (a getter, proxy or `toJSON` that throws), `"[function]"`,
 * `"[symbol]"`. A longer string (or key) is cut and ends in `"…[cut: <length> chars, sha256
 * <hex>]"`: the original length in UTF-16 code units and the SHA-256 of its UTF-8 bytes, so two
 * values that differ only past the cut stay distinct in the trail (and two long keys never merge)
 * and a string that merely ends in a marker-like text is told from a cut (issue 15); the marks
 * may add at most 10,000 characters past the 100,000, later strings become `"[truncated]"`. A `Date` becomes its ISO string. `toJSON`
 * methods are not called. Undefined stays undefined at the top and is dropped inside objects.
 */
export function storableAuditValue(value: unknown): unknown {
  const budget: Budget = { nodes: MAX_NODES, chars: MAX_CHARS, hashes: new Map() };
  return snapshot(value, 0, new Set(), budget);
}

function snapshot(value: unknown, depth: number, path: Set<object>, budget: Budget): unknown {
  if (budget.nodes-- <= 0) return "[truncated]";
  switch (typeof value) {
    case "string": {
      const kept = Math.max(0, Math.min(MAX_STRING, budget.chars));
      budget.chars -= Math.min(value.length, kept);
      if (value.length <= kept) return value;
      if (budget.chars < -MAX_MARK_CHARS) return "[truncated]";
      const cut = cutMark(value.slice(0, kept), value, budget);
      budget.chars -= cut.length - kept;
      return cut;
    }
    case "number":
    case "boolean":
    case "bigint":
    case "undefined":
      return value;
    case "function":
      return "[function]";
    case "symbol":
      return "[symbol]";
  }
  if (value === null) return null;
  const object = value as object;
  if (path.has(object)) return "[circular]";
  if (depth >= MAX_DEPTH) return "[too deep]";
  try {
    if (object instanceof Date) return Number.isNaN(object.getTime()) ? "[invalid date]" : object.toISOString();
    path.add(object);
    try {
      if (Array.isArray(object)) {
        const copy: unknown[] = [];
        for (let index = 0; index < object.length; index++) {
          if (budget.nodes <= 0) {
            copy.push("[truncated]");
            break;
          }
          const item = snapshot(
            readSafely(() => (object as unknown[])[index]),
            depth + 1,
            path,
            budget,
          );
          copy.push(item === undefined ? null : item);
        }
        return copy;
      }
      const copy: Record<string, unknown> = {};
      for (const key of Object.keys(object)) {
        if (budget.nodes <= 0 || budget.chars < -MAX_MARK_CHARS) {
          copy["…"] = "[truncated]";
          break;
        }
        const item = snapshot(
          readSafely(() => (object as Record<string, unknown>)[key]),
          depth + 1,
          path,
          budget,
        );
        if (item === undefined) continue;
        // A key is an identifier (a parameter's or a field's name): echoed visible, as a target is.
        // Only the part kept is escaped (escaping never shortens: MAX_KEY + 1 code units hold it);
        // escaping a 1 MiB key whole held the event loop a second per refusal (adv15o MEDIUM-3).
        const visibleKey = visibleText(key.length > MAX_KEY ? key.slice(0, MAX_KEY + 1) : key);
        const storedKey =
          key.length > MAX_KEY || visibleKey.length > MAX_KEY
            ? cutMark(cutText(visibleKey, MAX_KEY), key, budget)
            : visibleKey;
        budget.chars -= storedKey.length;
        // defineProperty: a "__proto__" key stays data.
        Object.defineProperty(copy, storedKey, { value: item, enumerable: true, writable: true, configurable: true });
      }
      return copy;
    } finally {
      path.delete(object);
    }
  } catch (error) {
    return unreadable(error);
  }
}

/** `kept` (what is shown of `original`) and a mark with `original`'s length and SHA-256 (see {@link storableAuditValue}). */
function cutMark(kept: string, original: string, budget: Budget): string {
  return `${kept}…[cut: ${original.length} chars, sha256 ${sha256Of(original, budget)}]`;
}

/** The SHA-256 of `value`'s UTF-8 bytes, hex; each distinct string hashed once per snapshot. */
function sha256Of(value: string, budget: Budget): string {
  let hash = budget.hashes.get(value);
  if (hash === undefined) {
    hash = createHash("sha256").update(value, "utf8").digest("hex");
    budget.hashes.set(value, hash);
  }
  return hash;
}

/** Reads a property; a throwing getter or proxy trap gives its marker string instead. */
function readSafely(read: () => unknown): unknown {
  try {
    return read();
  } catch (error) {
    return unreadable(error);
  }
}

function unreadable(error: unknown): string {
  let reason = "error";
  try {
    reason = error instanceof Error ? error.message : String(error);
  } catch {
    // An error whose message cannot be read: the generic marker.
  }
  return `[unreadable: ${reason.slice(0, 200)}]`;
}
