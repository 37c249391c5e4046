import { MemoryStore } from "../../src/memory/memory-store";
import type { RecipeInput } from "../../src/recipes/recipe-schema";
import type { Principal } from "../../src/security/authorization";

// Shared by the safety-function tests (reviews 15y, 15z, 15w): principals, a long valve recipe,
// a store whose process saves and audit records can be held or slowed, and a promise tracker.

export const admin: Principal = { id: "root", roles: ["admin"] };
export const engineer: Principal = { id: "erik", roles: ["engineer"] };

/** 30 loops of a 50 ms `valve.h2o` pulse: a process that runs long enough to be interrupted. */
export const VALVE_LOOP: RecipeInput = {
  name: "run",
  version: 1,
  steps: [
    {
      loop: {
        count: 30,
        steps: [
          { set: { tag: "valve.h2o", value: true } },
          { wait: { durationMs: 50 } },
          { set: { tag: "valve.h2o", value: false } },
        ],
      },
    },
  ],
};

/** A MemoryStore whose process saves hold while held (a frozen process table), with slow audit records. */
export class HeldProcessStore extends MemoryStore {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  #only: "final" | undefined;
  /** Each audit entry takes this long to store (simulated ms): a command's commit is a window. */
  auditDelayMs = 0;
  /** Holds every save from now on, or only those of a record in a final status. */
  hold(only?: "final"): void {
    this.#only = only;
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  constructor(options: ConstructorParameters<typeof MemoryStore>[0]) {
    super(options);
    const audit = this.audit;
    const record = audit.record.bind(audit);
    (audit as { record: typeof record }).record = async (entry) => {
      if (this.auditDelayMs > 0) await options!.clock!.sleep(this.auditDelayMs);
      return record(entry);
    };
    const inner = this.processes;
    const save = inner.save.bind(inner);
    (inner as { save: typeof save }).save = async (record, events, expected) => {
      const final = record.status === "completed" || record.status === "aborted" || record.status === "failed";
      if (this.#only === undefined || final) await this.#gate;
      return save(record, events, expected);
    };
  }
}

/** Tracks whether a promise has settled, and how. */
export function settled<T>(promise: Promise<T>) {
  const state: { done: boolean; value?: unknown; code?: string } = { done: false };
  promise.then(
    (value) => Object.assign(state, { done: true, value }),
    (error: { code?: string }) => Object.assign(state, { done: true, code: error.code }),
  );
  return state;
}
