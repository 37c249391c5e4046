import { expect, test } from "vitest";
import { GOOD, quality, QualityCodes } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
import { checkDriverSamples } from "./driver-samples";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64" },
  "door.closed": { dataType: "bool" },
  "seq.counter": { dataType: "uint32" },
});
const asked = new Map(tags.list().map((tag) => [tag.name, tag]));
const NOW = Date.UTC(2026, 10, 22);
const good = (tag: string, value: Sample["value"]): Sample => ({ tag, value, timestamp: NOW - 5, quality: GOOD });

test("a wrong-typed value marked good becomes bad BadTypeMismatch with a reason; an exact conversion is kept", () => {
  const { samples } = checkDriverSamples(
    [good("chamber.pressure", "5.0 mbar"), good("door.closed", 42), good("seq.counter", 7n)],
    asked,
    true,
    NOW,
  );
  expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.severity, sample.quality.code])).toEqual([
    ["chamber.pressure", null, "bad", QualityCodes.BadTypeMismatch],
    ["door.closed", null, "bad", QualityCodes.BadTypeMismatch],
    ["seq.counter", 7, "good", QualityCodes.Good],
  ]);
  expect(samples[0]!.quality.reason).toMatch(/"5\.0 mbar" cannot be carried exactly by float64/);
  expect(checkDriverSamples([good("door.closed", 1)], asked, false, NOW).samples[0]!.value).toBe(true);
});

test("a null value with good or uncertain quality is bad; a bad sample is kept as the driver reported it", () => {
  const badSample: Sample = { ...good("chamber.pressure", null), quality: quality("bad", "sensor fault") };
  const { samples } = checkDriverSamples([good("door.closed", null), badSample], asked, false, NOW);
  expect(samples[0]!.quality).toMatchObject({ severity: "bad", code: QualityCodes.BadTypeMismatch });
  expect(samples[1]).toBe(badSample);
});

test("samples for tags not asked for are dropped and counted; a read reply missing a tag gives it a bad BadNoData sample", () => {
  const reply = [good("chamber.pressure", 5), good("ghost.tag", 1), good("chamber.pressure", 6)];
  const { samples, unrequested } = checkDriverSamples(reply, asked, true, NOW);
  expect(unrequested).toBe(2); // the unknown tag and the duplicate in one read reply
  expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.code, sample.timestamp])).toEqual([
    ["chamber.pressure", 5, QualityCodes.Good, NOW - 5],
    ["door.closed", null, QualityCodes.BadNoData, NOW],
    ["seq.counter", null, QualityCodes.BadNoData, NOW],
  ]);
  expect(samples[1]!.quality.reason).toBe("driver returned no sample");
});

test("a read reply out of the order asked is matched by name; a tag at its own position after it came elsewhere is a duplicate", () => {
  // "door.closed" first comes at position 0 (not its own), then again at its own position 1.
  const reply = [good("door.closed", true), good("door.closed", false), good("chamber.pressure", 5)];
  const { samples, unrequested } = checkDriverSamples(reply, asked, true, NOW);
  expect(unrequested).toBe(1);
  expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.code])).toEqual([
    ["door.closed", true, QualityCodes.Good],
    ["chamber.pressure", 5, QualityCodes.Good],
    ["seq.counter", null, QualityCodes.BadNoData],
  ]);
});

test("a subscription batch may cover some tags and repeat one (queued values); nothing is invented for the rest", () => {
  const reply = [good("seq.counter", 1), good("seq.counter", 2)];
  const { samples, unrequested } = checkDriverSamples(reply, asked, false, NOW);
  expect(unrequested).toBe(0);
  expect(samples.map((sample) => sample.value)).toEqual([1, 2]);
});

test("a source timestamp a store cannot keep (NaN, out of range) is stamped on receipt and a good sample turns uncertain", () => {
  const reply = [
    { ...good("chamber.pressure", 5), timestamp: Number.NaN },
    { ...good("door.closed", true), timestamp: 1e20, quality: quality("bad", "x") },
  ];
  const { samples } = checkDriverSamples(reply, asked, false, NOW);
  expect(samples[0]).toMatchObject({ timestamp: NOW, value: 5, quality: { severity: "uncertain" } });
  expect(samples[1]).toMatchObject({ timestamp: NOW, quality: { severity: "bad", reason: "x" } });
});

test("a good float sample holding NaN or ±Infinity (scalar or any array element) is bad with the value kept; an integer tag or a finite float is untouched (adv12q F4)", () => {
  const floats = defineTags({
    f64: { dataType: "float64" },
    f32: { dataType: "float32" },
    neg: { dataType: "float64" },
    array: { dataType: "float32", arrayLength: 3 },
    fine: { dataType: "float64", arrayLength: 2 },
    count: { dataType: "uint16" },
  });
  const byName = new Map(floats.list().map((tag) => [tag.name, tag]));
  const uncertain: Sample = { ...good("neg", Number.NaN), quality: quality("uncertain", "sensor warming up") };
  const { samples } = checkDriverSamples(
    [
      good("f64", Number.NaN),
      good("f32", Number.POSITIVE_INFINITY),
      good("neg", Number.NEGATIVE_INFINITY),
      good("array", Object.freeze([1.5, Number.POSITIVE_INFINITY, Number.NaN])),
      good("fine", Object.freeze([1.5, -2])),
      good("count", 7),
    ],
    byName,
    true,
    NOW,
  );
  expect(
    samples.map((sample) => [sample.tag, sample.quality.severity, sample.quality.code, sample.quality.reason]),
  ).toEqual([
    ["f64", "bad", QualityCodes.Bad, "the device sent NaN (not a number)"],
    ["f32", "bad", QualityCodes.BadOutOfRange, "the device sent +Infinity"],
    ["neg", "bad", QualityCodes.BadOutOfRange, "the device sent -Infinity"],
    ["array", "bad", QualityCodes.Bad, "the device sent NaN (not a number) in an element of the array"],
    ["fine", "good", QualityCodes.Good, undefined],
    ["count", "good", QualityCodes.Good, undefined],
  ]);
  // The value is kept exactly as sent (stores keep NaN and ±Infinity).
  expect(samples[0]!.value).toBeNaN();
  expect(samples[1]!.value).toBe(Number.POSITIVE_INFINITY);
  expect(samples[3]!.value).toEqual([1.5, Number.POSITIVE_INFINITY, Number.NaN]);
  // Sibling: an uncertain NaN is kept as the driver reported it (never shown good either).
  expect(checkDriverSamples([uncertain], byName, false, NOW).samples[0]).toBe(uncertain);
});

test("a float64 scalar tag: a finite number or a non-good one is kept as sent, a good NaN is bad; a float64 array tag given a number is a type mismatch (issue 16: the float64 fast path)", () => {
  const float64 = defineTags({ scalar: { dataType: "float64" }, series: { dataType: "float64", arrayLength: 2 } });
  const byName = new Map(float64.list().map((tag) => [tag.name, tag]));
  const finite = good("scalar", 1.5);
  const uncertainNaN: Sample = { ...good("scalar", Number.NaN), quality: quality("uncertain", "warming up") };
  const badInfinity: Sample = {
    ...good("scalar", Number.POSITIVE_INFINITY),
    quality: quality("bad", "overflow", QualityCodes.BadOutOfRange),
  };
  for (const sample of [finite, uncertainNaN, badInfinity])
    expect(checkDriverSamples([sample], byName, false, NOW).samples[0]).toBe(sample);
  const [nan] = checkDriverSamples([good("scalar", Number.NaN)], byName, false, NOW).samples;
  expect(nan).toMatchObject({ quality: { severity: "bad", code: QualityCodes.Bad } });
  expect(nan!.value).toBeNaN();
  const [scalarForArray] = checkDriverSamples([good("series", 2.5)], byName, false, NOW).samples;
  expect(scalarForArray).toMatchObject({
    value: null,
    quality: { severity: "bad", code: QualityCodes.BadTypeMismatch },
  });
});
