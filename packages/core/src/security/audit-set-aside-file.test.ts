import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { setAsideLinesAmong } from "./audit-set-aside-file";

// adv15x MEDIUM-2 (issue 15): `<journal>.set-aside` grows with every entry ever kept aside and was
// read whole at every open; it is now streamed line by line, keeping only the journal's replayed
// records that it holds.
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-set-aside-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const line = (n: number): string => JSON.stringify({ id: `e-${n}`, action: "write", reason: "x".repeat(n % 97) });

describe("setAsideLinesAmong", () => {
  test("finds the replayed records among 100,000 lines, across read chunks, and nothing else", async () => {
    const file = join(dir, "big.set-aside");
    const lines = Array.from({ length: 100_000 }, (_, n) => line(n));
    await writeFile(file, `${lines.join("\n")}\n`);
    const wanted = new Set([line(0), line(54_321), line(99_999), line(100_000)]);
    const found = await setAsideLinesAmong(file, wanted);
    expect([...found].sort()).toEqual([line(0), line(54_321), line(99_999)].sort());
  });

  // Sibling: a line is matched whole, never by a prefix, and a last line without its newline (an
  // append cut short by a crash) is still read.
  test("matches whole lines only; a last line without a newline counts", async () => {
    const file = join(dir, "cut.set-aside");
    await writeFile(file, `${line(1)}\n${line(2)}x\n${line(3)}`);
    const found = await setAsideLinesAmong(file, new Set([line(1), line(2), line(3)]));
    expect([...found].sort()).toEqual([line(1), line(3)].sort());
  });

  test("a file that does not exist holds nothing; another read error is thrown", async () => {
    expect((await setAsideLinesAmong(join(dir, "none.set-aside"), new Set([line(1)]))).size).toBe(0);
    await expect(setAsideLinesAmong(dir, new Set([line(1)]))).rejects.toMatchObject({ code: "EISDIR" });
  });
});
