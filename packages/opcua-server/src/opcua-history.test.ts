import { KilnError, quality } from "@kiln/core";
import { describe, expect, test } from "vitest";
import {
  HISTORIAN_CALCULATED,
  HISTORIAN_INTERPOLATED,
  historyStatusOfError,
  statusCodeOfAggregate,
} from "./opcua-history";

describe("statusCodeOfAggregate (Part 13 quality of a Kiln aggregate)", () => {
  test("good is Good with the HistorianCalculated bit, Interpolative with HistorianInterpolated", () => {
    expect(statusCodeOfAggregate("Average", { value: 1, quality: quality("good") })).toBe(HISTORIAN_CALCULATED);
    expect(statusCodeOfAggregate("Interpolative", { value: 1, quality: quality("good") })).toBe(HISTORIAN_INTERPOLATED);
  });

  test("uncertain is UncertainDataSubNormal unless it has its own uncertain code, never good", () => {
    const resting = statusCodeOfAggregate("Average", { value: 1, quality: quality("uncertain", "rests on bad data") });
    expect(resting).toBe((0x40a40000 | HISTORIAN_CALCULATED) >>> 0);
    const own = statusCodeOfAggregate("Maximum", { value: 1, quality: quality("uncertain", "x", 0x40900000) });
    expect(own).toBe((0x40900000 | HISTORIAN_CALCULATED) >>> 0);
  });

  test("bad with no data is BadNoData; a bad result keeps its own code (overflow: BadOutOfRange)", () => {
    expect(statusCodeOfAggregate("Average", { value: null, quality: quality("bad", "no data") })).toBe(0x809b0000);
    expect(statusCodeOfAggregate("Total", { value: null, quality: quality("bad", "overflow", 0x803c0000) })).toBe(
      0x803c0000,
    );
    // a null value is never served good or uncertain
    expect(statusCodeOfAggregate("Average", { value: null, quality: quality("good") })).toBe(0x809b0000);
  });
});

describe("historyStatusOfError", () => {
  test("maps Kiln's errors of the history port to Bad codes", () => {
    expect(historyStatusOfError(new KilnError("KILN_VALIDATION", "x"))).toBe(0x80ab0000);
    expect(historyStatusOfError(new KilnError("KILN_TIMEOUT", "x"))).toBe(0x800a0000);
    expect(historyStatusOfError(new KilnError("KILN_LIFECYCLE", "x"))).toBe(0x80040000);
    expect(historyStatusOfError(new Error("boom"))).toBe(0x80020000);
  });
});
