import { describe, expect, test } from "vitest";
import { jsonText, parseJsonText } from "./sql-expressions";
import { escapeText, unescapeText } from "./text-escape";

const units = (text: string): number[] => [...text].map((unit) => unit.charCodeAt(0));

describe("escapeText", () => {
  test("escapes NUL, lone surrogates and the escape character, and nothing else", () => {
    expect(escapeText("LOT-42\0\0")).toBe("LOT-42\u00100000\u00100000");
    expect(escapeText("\uD800x\uDC00")).toBe("\u0010D800x\u0010DC00");
    expect(escapeText("\u0010")).toBe("\u00100010");
    const plain = "Temp °C \uFFFF \uD83D\uDE00 \\u0000";
    expect(escapeText(plain)).toBe(plain);
  });

  test("stored text is valid UTF-16 without NUL, and unescaping gives back the original", () => {
    const hostile = ["\0", "\uD800", "\uDBFF\uDFFF", "\uDFFF\uD800", "\u0010", "\u00100000", "a\u0010FFFFb", "", "x"];
    for (const text of hostile) {
      const stored = escapeText(text);
      expect(stored.includes("\0")).toBe(false);
      expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(stored)).toBe(false);
      expect(units(unescapeText(stored))).toEqual(units(text));
    }
  });
});

describe("jsonText", () => {
  test("escapes every string of a document, keys included, and parseJsonText restores them", () => {
    const value = { "k\0": ["\uD800", { note: "\u0010" }], n: 1, big: 5n };
    const text = jsonText(value)!;
    expect(text.includes("\\u0000")).toBe(false);
    expect(text.toLowerCase().includes("\\ud800")).toBe(false);
    expect(parseJsonText(text)).toEqual({ "k\0": ["\uD800", { note: "\u0010" }], n: 1, big: "5" });
  });

  test("leaves a document without such strings as JSON.stringify writes it", () => {
    expect(jsonText({ a: "b", c: [1, null] })).toBe('{"a":"b","c":[1,null]}');
  });
});
