import { describe, expect, test } from "vitest";
import { MemoryStore } from "../memory/memory-store";
import { storeConformance } from "./store-conformance";

storeConformance({
  test,
  expect,
  describe,
  factory: async () => new MemoryStore(),
  capabilities: new MemoryStore().capabilities,
});
