import { readFileSync } from "node:fs";
import { expect, test } from "vitest";

const root = new URL("../", import.meta.url);
const readme = readFileSync(new URL("README.md", root), "utf8");
const excerpts = [...readme.matchAll(/<!-- excerpt: (\S+) -->\s*```ts\n([\s\S]*?)```/g)];
const lines = (text: string): string[] => text.split("\n").map((line) => line.trim());

test("the README quotes the source", () => {
  expect(excerpts.length).toBeGreaterThan(5);
  for (const [, path, code] of excerpts) {
    const quoted = lines(code!.trimEnd());
    const source = lines(readFileSync(new URL(path!, root), "utf8"));
    const found = source.some((_, start) => quoted.every((line, offset) => source[start + offset] === line));
    expect(found ? "found" : `${path} does not contain:\n${code}`).toBe("found");
  }
});
