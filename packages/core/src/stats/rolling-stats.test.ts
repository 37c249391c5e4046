import { expect, test } from "vitest";
import { RollingStats } from "./rolling-stats";

test("quantiles by nearest rank over the window, max and count over everything", () => {
  const stats = new RollingStats(100);
  expect(stats.summary()).toEqual({ count: 0, p50: 0, p99: 0, max: 0 });
  stats.observe(1_000);
  for (let i = 1; i <= 100; i++) stats.observe(i);
  expect(stats.summary()).toEqual({ count: 101, p50: 50, p99: 99, max: 1_000 });
});
