/**
 * The one escape that lets PostgreSQL hold every JavaScript string exactly.
 *
 * PostgreSQL `text` and `jsonb` cannot hold U+0000 (SQLSTATE 22021 and 22P05), and a JavaScript
 * string with a lone surrogate (U+D800..U+DFFF unpaired) is not valid UTF-8, so drivers replace
 * it with U+FFFD. Stored text therefore writes each of these code units, and the escape
 * character itself, as U+0010 (DATA LINK ESCAPE, "change the meaning of what follows") followed
 * by four upper-case hex digits of the code unit: NUL is stored as `\u00100000`, a lone U+D800 as
 * `\u0010D800`, a U+0010 as `\u00100010`. Every other character, U+FFFF included, is stored as
 * it is. See docs/adr/0012-storable-values.md.
 */

const ESCAPE = "\u0010";
// NUL, the escape itself, or a surrogate that is not part of a well-formed pair. Control
// characters in these patterns are the point.
// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[\u0000\u0010]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
// eslint-disable-next-line no-control-regex
const ESCAPED = /\u0010([0-9A-F]{4})/g;

/** `text` as stored: NUL, lone surrogates and U+0010 escaped. Returns `text` itself when nothing needs it. */
export function escapeText(text: string): string {
  NEEDS_ESCAPE.lastIndex = 0;
  if (!NEEDS_ESCAPE.test(text)) return text;
  NEEDS_ESCAPE.lastIndex = 0;
  return text.replace(NEEDS_ESCAPE, (unit) => ESCAPE + unit.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0"));
}

/** The string stored text stands for: the inverse of {@link escapeText}. */
export function unescapeText(text: string): string {
  if (!text.includes(ESCAPE)) return text;
  return text.replace(ESCAPED, (_escape, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/** A copy of a JSON-like value with every string in it, object keys included, escaped (or unescaped). */
export function mapStrings(value: unknown, map: (text: string) => string): unknown {
  if (typeof value === "string") return map(value);
  if (Array.isArray(value)) return value.map((item) => mapStrings(item, map));
  if (typeof value === "object" && value !== null && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) out[map(key)] = mapStrings(child, map);
    return out;
  }
  return value;
}

/** Whether `text`, a whole JSON document, holds a string that {@link escapeText} would change. */
export function jsonNeedsEscape(text: string): boolean {
  // JSON.stringify writes NUL and U+0010 as \u0000 and \u0010, and lone surrogates as \udXXX.
  return /\\u00(?:00|10)|\\ud[89a-f]/i.test(text);
}
