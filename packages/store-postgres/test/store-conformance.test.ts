import { describe, expect, test } from "vitest";
import { storeConformance } from "@kiln/core/testing";
import { PostgresStore } from "../src/index";
import { NEEDS_SERVER, databaseUrl, useTarget } from "./support/database";

const capabilities = new PostgresStore().capabilities;

// The same contract MemoryStore passes in @kiln/core, run against PostgreSQL.
describe("PostgresStore on embedded PGlite", () => {
  const target = useTarget("pglite");
  storeConformance({ test, expect, describe, factory: async () => target.create(), capabilities });
});

describe.skipIf(!databaseUrl)(`PostgresStore on the server ${NEEDS_SERVER}`, () => {
  const target = useTarget("server");
  storeConformance({ test, expect, describe, factory: async () => target.create(), capabilities });
});
