// @kiln/core/testing: what tests need. The in-memory defaults (SimulatedPlc, MemoryStore,
// MemoryMetrics) are exported once, from "@kiln/core".
export { SimulatedClock } from "../memory/simulated-clock";
export { MemoryStoreFaults, type MemoryStorePort } from "../memory/memory-store-faults";
export type { SimulatedPlcFaults } from "../memory/simulated-plc-faults";
export { auditTrailPropertySuite, type AuditTrailPropertyOptions } from "./audit-trail-property";
export { expectKilnError, type ConformanceAssertion, type ConformanceRunner } from "./conformance-runner";
export {
  plcDriverAbortConformance,
  plcDriverBrowseConformance,
  plcDriverConcurrencyConformance,
  plcDriverConformance,
  plcDriverErrorConformance,
  plcDriverLifecycleConformance,
  plcDriverReadConformance,
  plcDriverSubscribeConformance,
  plcDriverWriteConformance,
  type PlcDriverConformanceGroups,
  type PlcDriverConformanceOptions,
  type PlcDriverFixture,
  type PlcDriverFixtureFeatures,
  type PlcDriverUnsupportedFaults,
} from "./plc-driver-conformance";
export {
  alarmHistoryConformance,
  arrayValueConformance,
  auditLogConformance,
  edgeValueConformance,
  eventStoreConformance,
  processRepositoryConformance,
  recipeRepositoryConformance,
  sampleConflictConformance,
  sampleSinkConformance,
  storeConformance,
  storeLifecycleConformance,
  storeRetentionConformance,
  type StoreConformanceGroup,
  type StoreConformanceOptions,
  type StoreFactory,
  type StoreGroupConformanceOptions,
} from "./store-conformance";
export { storeHistoryConformance } from "./store-history-conformance";
