import type { InjectionToken } from "tsyringe";
import type { AlarmEngine } from "../alarms/alarm-engine";
import type { Acquisition } from "../acquisition/acquisition";
import type { CurrentValueTable } from "../cvt/current-value-table";
import type { TagCatalog } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import type { EventBus } from "../events/event-bus";
import type { LoggingFilter } from "../logging/logging-filter";
import type { SampleLogger } from "../logging/sample-logger";
import type { Clock } from "../ports/clock";
import type { Logger } from "../ports/logger";
import type { Metrics } from "../ports/metrics";
import type { PlcDriver } from "../ports/plc-driver";
import type { Store } from "../ports/store";
import type { Authorizer } from "../security/authorization";
import type { AuditedCommandRunner } from "../security/audited-command";
import type { ResolvedControlSystemOptions } from "./control-system-options";

function token<T>(description: string): InjectionToken<T> & symbol {
  return Symbol(`kiln.${description}`) as InjectionToken<T> & symbol;
}

/**
 * The registration tokens of a control system's container. Override any of them with
 * `createControlSystem({ ..., register: (registry) => registry.override(Tokens.Driver, ...) })`.
 */
export const Tokens = {
  /** The validated options, with defaults applied. */
  Options: token<ResolvedControlSystemOptions>("options"),
  Clock: token<Clock>("clock"),
  Logger: token<Logger>("logger"),
  Metrics: token<Metrics>("metrics"),
  Bus: token<EventBus<KilnEvents>>("bus"),
  Tags: token<TagCatalog>("tags"),
  Driver: token<PlcDriver>("driver"),
  Store: token<Store>("store"),
  CurrentValueTable: token<CurrentValueTable>("cvt"),
  LoggingFilter: token<LoggingFilter>("logging-filter"),
  SampleLogger: token<SampleLogger>("sample-logger"),
  Acquisition: token<Acquisition>("acquisition"),
  AlarmEngine: token<AlarmEngine>("alarm-engine"),
  /** Decides who may do what (role table). */
  Authorizer: token<Authorizer>("authorizer"),
  /** Authorizes, runs and audits every operator command. */
  CommandRunner: token<AuditedCommandRunner>("command-runner"),
} as const;
