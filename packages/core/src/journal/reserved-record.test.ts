import { mkdtemp, open, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { ReservedRecord } from "./reserved-record";

const SLOT = 4096;

async function fresh(): Promise<string> {
  return join(await mkdtemp(join(tmpdir(), "kiln-reserved-")), "audit.journal.reserve");
}

describe("ReservedRecord", () => {
  test("reserves both slots at open, so later writes overwrite in place (the file never grows)", async () => {
    const path = await fresh();
    const record = await ReservedRecord.open(path, SLOT);
    expect((await stat(path)).size).toBe(2 * SLOT);
    expect(record.read()).toBeUndefined();
    for (let index = 0; index < 5; index++) await record.write(Buffer.from(`count ${index}`));
    expect((await stat(path)).size).toBe(2 * SLOT);
    await record.close();
    const again = await ReservedRecord.open(path, SLOT);
    expect(again.read()?.toString()).toBe("count 4");
    await again.close();
  });

  test("a torn write of the newer slot leaves the record before it whole", async () => {
    const path = await fresh();
    const record = await ReservedRecord.open(path, SLOT);
    await record.write(Buffer.from("first"));
    await record.write(Buffer.from("second"));
    await record.close();
    // "second" is sequence 2: slot 0. Tear its payload.
    const file = await open(path, "r+");
    await file.write(Buffer.from("XX"), 0, 2, 16);
    await file.close();
    const again = await ReservedRecord.open(path, SLOT);
    expect(again.read()?.toString()).toBe("first");
    // The next write goes to the slot that does not hold the newest whole record.
    await again.write(Buffer.from("third"));
    await again.close();
    expect((await readFile(path)).subarray(SLOT + 16, SLOT + 21).toString()).toBe("first");
    const last = await ReservedRecord.open(path, SLOT);
    expect(last.read()?.toString()).toBe("third");
    await last.close();
  });

  test("a record larger than a slot is refused before anything is written", async () => {
    const record = await ReservedRecord.open(await fresh(), SLOT);
    expect(() => record.write(Buffer.alloc(SLOT))).toThrow(RangeError);
    await record.close();
  });
});
