import { expectTypeOf, test } from "vitest";
import type { KilnEvents } from "../events/catalogue";
import type { AlarmHistoryEntry } from "@kiln/core/driver-kit";
import type { AlarmKind } from "./alarm-definition";
import type { AlarmTransitionCause } from "./alarm-engine";
import type { AlarmStateName } from "./alarm-state";

// The event catalogue spells the alarm unions out (it imports nothing from alarms/); these keep them in step.
test("alarm-state-change carries the state model's names, causes and kinds", () => {
  type Change = KilnEvents["alarm-state-change"];
  expectTypeOf<Change["from"]>().toEqualTypeOf<AlarmStateName>();
  expectTypeOf<Change["to"]>().toEqualTypeOf<AlarmStateName>();
  expectTypeOf<Change["cause"]>().toEqualTypeOf<AlarmTransitionCause>();
  expectTypeOf<Change["kind"]>().toEqualTypeOf<AlarmKind>();
  expectTypeOf<KilnEvents["alarm-raise"]["kind"]>().toEqualTypeOf<AlarmKind>();
});

test("an alarm-state-change payload is a valid history entry", () => {
  expectTypeOf<KilnEvents["alarm-state-change"]>().toExtend<AlarmHistoryEntry>();
});
