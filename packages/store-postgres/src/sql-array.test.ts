import { describe, expect, test } from "vitest";
import { arrayLiteral } from "./sql-array";

describe("arrayLiteral", () => {
  test("quotes strings, escaping quotes and backslashes, and keeps NULL distinct from 'NULL'", () => {
    expect(arrayLiteral(["a", 'say "hi"', "back\\slash", "{,}", "NULL", null, undefined, ""])).toBe(
      '{"a","say \\"hi\\"","back\\\\slash","{,}","NULL",NULL,NULL,""}',
    );
  });

  test("writes numbers so float8 reads them back exactly, non-finite ones included", () => {
    expect(arrayLiteral([1, -2.5, 0.1, 1e-300, 1767225600123000, Number.NaN, Infinity, -Infinity])).toBe(
      "{1,-2.5,0.1,1e-300,1767225600123000,NaN,Infinity,-Infinity}",
    );
  });

  test("writes booleans as t/f, bigints in full, and an empty array as {}", () => {
    expect(arrayLiteral([true, false, 9_007_199_254_740_993n])).toBe("{t,f,9007199254740993}");
    expect(arrayLiteral([])).toBe("{}");
  });
});
