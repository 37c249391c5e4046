import { describe, expect, test } from "vitest";
import { auditedText, boundedText, visibleText } from "./command-input";

// Adversarial review adv15n, MEDIUM-2: auditedText escaped the whole of a caller's text before
// cutting it to its bound: a refused write whose target was 1 MiB of NUL held the event loop about
// 0.9 s (1.6 s with lone surrogates), an engineer's allowed write waited 11.7 s behind ten such
// refusals. Only the part kept is escaped now; what an entry shows is the same.

/** What the old rule kept (escape all, then cut), without its marker. */
const keptByOldRule = (text: string, max: number) => {
  const old = boundedText(visibleText(text), max);
  const marker = old.lastIndexOf("…(truncated, ");
  return marker === -1 ? old : old.slice(0, marker);
};
const kept = (shown: string) => shown.slice(0, shown.lastIndexOf("…(truncated, "));

describe("auditedText escapes only what it keeps (adv15n MEDIUM-2)", () => {
  test("1 MiB of NUL: the first 256 code units of its escaping, and the length the caller gave", () => {
    const text = "\u0000".repeat(1 << 20);
    const shown = auditedText(text, 256);
    expect(kept(shown)).toBe(keptByOldRule(text, 256));
    expect(shown.endsWith(`…(truncated, ${1 << 20} chars)`)).toBe(true);
    expect(shown.length).toBeLessThan(300);
  });

  test("(sibling) mixed text whose escapes and surrogate pairs straddle the bound keeps what the old rule kept, never half a pair", () => {
    const pieces = ["a", "\u0000", "😀", "\u202E", "\\", "\uD800", "é", "\u2066"];
    let seed = 7;
    for (let trial = 0; trial < 300; trial++) {
      let text = "";
      const length = 200 + (trial % 120);
      while (text.length < length) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        text += pieces[seed % pieces.length];
      }
      for (const max of [64, 255, 256]) {
        const shown = auditedText(text, max);
        if (text.length <= max) {
          expect(shown).toBe(boundedText(visibleText(text), max));
          continue;
        }
        expect(kept(shown)).toBe(keptByOldRule(text, max));
        expect(/[\uD800-\uDBFF]$/.test(kept(shown))).toBe(false);
        expect(shown.endsWith(`…(truncated, ${text.length} chars)`)).toBe(true);
      }
    }
  });
});
