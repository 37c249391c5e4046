import { describe, expect, test } from "vitest";
import { storableAuditValue } from "./storable-value";

// Adversarial review adv15o, MEDIUM-3 and MEDIUM-4: the audited snapshot of a value escaped each
// object key whole before cutting it (a 1 MiB key: 1.1 s of event loop per refusal), counted keys
// against no character budget (10,000 keys of 300 characters: a 3.84 MB entry), and hashed a cut
// string in full at every place it appeared (one 50 MB string 200 times: 22.5 s).

describe("the audited snapshot of a value bounds its keys and hashes each string once (adv15o)", () => {
  test("a key of 1 MiB of NUL is kept escaped to 256 code units, with the length the caller gave", () => {
    const copy = storableAuditValue({ ["\u0000".repeat(1 << 20)]: 1 }) as Record<string, unknown>;
    const [key] = Object.keys(copy);
    expect(key!.startsWith("\\u{0000}")).toBe(true);
    expect(key).toMatch(/…\[cut: 1048576 chars, sha256 [0-9a-f]{64}\]$/);
    expect(key!.length).toBeLessThan(400);
  });

  test("(sibling) 10,000 keys of 300 characters stay within the value's character budget", () => {
    const value = Object.fromEntries(Array.from({ length: 10_000 }, (_, index) => [`${index}`.padEnd(300, "k"), 1]));
    const copy = storableAuditValue(value);
    // 100,000 characters and up to 10,000 of marks (before: 3.84 MB).
    expect(JSON.stringify(copy).length).toBeLessThan(150_000);
    expect((copy as Record<string, unknown>)["…"]).toBe("[truncated]");
  });

  test("(sibling) one long string given many times is cut the same way each time", () => {
    const long = "x".repeat(200_000);
    const copy = storableAuditValue(Array.from({ length: 50 }, () => long)) as string[];
    const marks = copy.filter((item) => item.includes("…[cut: 200000 chars, sha256 "));
    expect(marks.length).toBeGreaterThan(1);
    expect(new Set(marks.map((item) => item.slice(item.indexOf("sha256"))))).toHaveProperty("size", 1);
  });
});
