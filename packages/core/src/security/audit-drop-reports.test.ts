import { describe, expect, test } from "vitest";
import type { AuditEntry } from "../ports/audit-log";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { AuditDropReports } from "./audit-drop-reports";

const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {}, child: () => silent } as never;

function entry(outcome: AuditEntry["outcome"], id: string): AuditEntry {
  return { id, principal: "vera", roles: ["viewer"], action: "tag.write", target: "heater.setpoint", outcome, at: 1 };
}

describe("AuditDropReports.dropWhileClosed while the stop is under way", () => {
  test("a denied command's dropped entry says it was refused, not that it acted (adv15g LOW-3); an allowed one that it acted", async () => {
    const bus = new EventBus<KilnEvents>({ now: () => 5 });
    const reasons: string[] = [];
    bus.on("audit-entry-drop", (event) => void reasons.push(event.reason));
    const reports = new AuditDropReports(
      { bus, clock: { now: () => 5, sleep: async () => {} } as never },
      silent,
      () => false,
    );
    reports.dropWhileClosed(entry("denied", "e1"));
    reports.dropWhileClosed(entry("allowed", "e2"));
    await new Promise((resolve) => setImmediate(resolve));
    expect(reasons).toHaveLength(2);
    expect(reasons[0]).toContain("which was refused during stop()");
    expect(reasons[0]).not.toContain("acted");
    expect(reasons[1]).toContain("which acted during stop()");
    expect(reports.droppedAtStop).toBe(2);
    expect(reports.dropped).toBe(2);
  });
});
