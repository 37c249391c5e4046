import { describe, expect, test } from "vitest";
import { decodeOverflow } from "./audit-reserve-record";

const bucket = (fields: Record<string, unknown>) => ({
  key: "viewer",
  first: 1,
  last: 2,
  principals: ["viewer"],
  actions: ["write"],
  ...fields,
});
const decode = (buckets: unknown[]) => decodeOverflow(Buffer.from(JSON.stringify(buckets), "utf8"));

// adv15q LOW-1: a collapsed bucket's parts were taken as read: a negative part inflated the
// bucket when a start took the parts whose summaries it found off it (1,000,281 summarized for 300
// refusals), and a part listed twice was taken off twice.
describe("a reserve record's overflow buckets read back", () => {
  test("parts with a count below 1, or an id seen before in the bucket, are not taken", () => {
    const read = decode([
      bucket({
        id: "x",
        count: 10,
        parts: [["a", -1_000_000], ["b", 3], ["b", 3], ["c", 0], ["d", 2], ["e", 1.5], "junk"],
      }),
    ]);
    expect(read?.get("viewer")).toMatchObject({
      id: "x",
      count: 10,
      parts: [
        ["b", 3],
        ["d", 2],
      ],
    });
  });

  test("(sibling) parts adding up to more than the bucket holds are all refused; a bucket counting below 1 is skipped", () => {
    const read = decode([
      bucket({
        key: "a",
        count: 5,
        parts: [
          ["p", 4],
          ["q", 4],
        ],
      }),
      bucket({ key: "b", count: -7 }),
      bucket({ key: "c", count: 0 }),
    ]);
    expect(read?.get("a")?.count).toBe(5);
    expect(read?.get("a")?.parts).toBeUndefined();
    expect(read?.has("b")).toBe(false);
    expect(read?.has("c")).toBe(false);
  });
});
