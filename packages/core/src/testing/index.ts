export { SimulatedClock } from "../memory/simulated-clock";
export { SimulatedPlc } from "../memory/simulated-plc";
export { MemoryStore, MemoryStoreFaults } from "../memory/memory-store";
export { MemoryMetrics } from "../memory/memory-metrics";
export type { ConformanceAssertion, ConformanceRunner } from "./conformance-runner";
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
} from "./plc-driver-conformance";
export {
  alarmHistoryConformance,
  auditLogConformance,
  edgeValueConformance,
  eventStoreConformance,
  processRepositoryConformance,
  recipeRepositoryConformance,
  sampleSinkConformance,
  storeConformance,
  storeLifecycleConformance,
  type StoreConformanceGroup,
  type StoreConformanceOptions,
  type StoreFactory,
  type StoreGroupConformanceOptions,
} from "./store-conformance";
export { storeHistoryConformance } from "./store-history-conformance";
