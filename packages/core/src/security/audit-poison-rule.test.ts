import { describe, expect, test } from "vitest";
import { PoisonEvidence } from "./audit-poison-rule";

// fix15ah (adv15c HIGH-1, step 4): the store's rate on other entries is of entries not under
// suspicion. Twenty entries of one principal the store failed on made q about 1, and no head was
// ever proven the cause.
describe("PoisonEvidence: the rate leaves out entries under suspicion and entries set aside", () => {
  function evidence(): PoisonEvidence {
    const poison = new PoisonEvidence();
    for (let index = 0; index < 20; index++) poison.took(`ok-${index}`);
    for (let index = 0; index < 19; index++) for (let turn = 0; turn < 3; turn++) poison.failed(`bad-${index}`);
    return poison;
  }

  test("the other suspects' failures counted as the store's: not proven (before)", () => {
    expect(evidence().provenCause("head", 3)).toBe(false);
  });

  test("left out as suspects: proven after three failures", () => {
    const suspects = new Set(Array.from({ length: 19 }, (_, index) => `bad-${index}`));
    expect(evidence().provenCause("head", 3, undefined, suspects)).toBe(true);
  });

  test("(sibling) entries set aside leave the window", () => {
    const poison = evidence();
    for (let index = 0; index < 19; index++) poison.setAside(`bad-${index}`);
    expect(poison.provenCause("head", 3)).toBe(true);
  });

  test("a store failing other entries not under suspicion is still flaky: not proven", () => {
    const poison = evidence();
    for (let index = 0; index < 10; index++) poison.failed(`other-${index}`);
    const suspects = new Set(Array.from({ length: 19 }, (_, index) => `bad-${index}`));
    expect(poison.provenCause("head", 3, undefined, suspects)).toBe(false);
  });
});
