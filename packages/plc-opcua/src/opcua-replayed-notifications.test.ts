import { GOOD, quality, QualityCodes, type Sample } from "@kiln/core";
import type { ClientSession, DataValue } from "node-opcua-client";
import { describe, expect, test } from "vitest";
import {
  isReplayed,
  isReplayedMessage,
  markReplayedNotifications,
  REPLAYED_REASON,
  replayedSample,
} from "./opcua-replayed-notifications";

describe("replayed notifications (docs/adr/0022, amendment fix13k)", () => {
  test("the DataValues of a Republish answer are marked, those of other answers are not", async () => {
    const replayedValue = { value: 1 };
    const liveValue = { value: 2 };
    const answer = {
      notificationMessage: { notificationData: [{ monitoredItems: [{ clientHandle: 5, value: replayedValue }] }] },
    };
    const session = {
      republish: (_request: unknown, callback: (error: Error | null, response: unknown) => void) =>
        setImmediate(() => callback(null, answer)),
    };
    markReplayedNotifications(session as unknown as ClientSession);
    const response = await new Promise((resolve) => session.republish({}, (_error, reply) => resolve(reply)));
    expect(response).toBe(answer);
    expect(isReplayed(replayedValue as unknown as DataValue)).toBe(true);
    expect(isReplayed(liveValue as unknown as DataValue)).toBe(false);
    expect(isReplayedMessage(answer.notificationMessage)).toBe(true);
    expect(isReplayedMessage({ notificationData: [] })).toBe(false);
  });

  test("a replayed value is never good: good and uncertain become uncertain with the reason, bad stays bad", () => {
    const good: Sample = { tag: "a", value: 3, timestamp: 1_000, quality: GOOD };
    expect(replayedSample(good)).toEqual({
      ...good,
      quality: { severity: "uncertain", code: QualityCodes.UncertainLastUsableValue, reason: REPLAYED_REASON },
    });
    const uncertain: Sample = { ...good, quality: quality("uncertain", "sensor drift", 0x40940000) };
    expect(replayedSample(uncertain).quality).toEqual({
      severity: "uncertain",
      code: 0x40940000,
      reason: `sensor drift; ${REPLAYED_REASON}`,
    });
    const bad: Sample = { ...good, value: null, quality: quality("bad", "BadSensorFailure", 0x808b0000) };
    expect(replayedSample(bad)).toBe(bad);
  });
});
