import { DataValue } from "node-opcua-data-value";
import type { MonitoredItem, OPCUAServer } from "node-opcua-server";
import { getStatusCodeFromCode } from "node-opcua-status-code";
import { statusCodeOfError } from "./opcua-status";

/** Told of an error a value source raised (`where`: the service or path it surfaced in). */
type ValueSourceErrorReporter = (where: string, error: unknown) => void;

type DataValueCallback = (error: Error | null, dataValue?: DataValue) => void;

/** The members of node-opcua's engine and address space accessor the isolation wraps (untyped or private there). */
interface ValueEngine {
  refreshValues(nodes: unknown[], maxAge: number, callback: (error: Error | null, values?: DataValue[]) => void): void;
  addressSpaceAccessor: { readNode(...args: unknown[]): Promise<DataValue> } | null;
}

/** The members of node-opcua's MonitoredItem that read its node's value (private in its typings). */
interface SampledItem {
  samplingFunc: ((this: MonitoredItem, context: unknown, old: DataValue, callback: DataValueCallback) => void) | null;
  __acquireInitialValue(context: unknown, callback: DataValueCallback): void;
}

/**
 * The value a failed value source answers: the error's own StatusCode when it is a `KilnError`
 * ({@link statusCodeOfError}, e.g. `BadNotConnected`), else `BadInternalError`; no value.
 */
function failedValue(error: unknown): DataValue {
  return new DataValue({ statusCode: getStatusCodeFromCode(statusCodeOfError(error)), serverTimestamp: new Date() });
}

/**
 * Makes an error of a variable's value source (a `bindVariable` getter or `refreshFunc` that
 * throws or fails) answer that one Read operation with a Bad StatusCode ({@link failedValue}), and
 * never reach the service: node-opcua runs the source on paths no service catch covers. A getter
 * that threw in a Read rejected a promise nobody awaited (the request never answered, and Node's
 * default for an unhandled rejection ends the process); a refresh that failed before a
 * HistoryRead broke an assert in a callback (the same). Wraps, once per engine:
 *
 * - `refreshValues` (before each Read and HistoryRead): its error is reported and the service
 *   goes on (a failed refresh leaves the variable Bad, or its next read fails as below), called
 *   back once;
 * - the accessor's `readNode` (each Read operation): an error is reported and answered as
 *   {@link failedValue} for that node alone.
 *
 * Monitored items read their node through {@link isolateSampling}.
 */
export function isolateValueSources(server: OPCUAServer, report: ValueSourceErrorReporter): void {
  const engine = server.engine as unknown as ValueEngine;
  const refresh = engine.refreshValues.bind(engine);
  engine.refreshValues = (nodes, maxAge, callback) => {
    let answered = false;
    const answer = (error: unknown, values?: DataValue[]): void => {
      if (answered) return;
      answered = true;
      if (error) report("Refresh", error);
      callback(null, values ?? []);
    };
    try {
      refresh(nodes, maxAge, answer);
    } catch (error) {
      answer(error);
    }
  };
  const accessor = engine.addressSpaceAccessor;
  if (!accessor) return;
  const readNode = accessor.readNode.bind(accessor);
  accessor.readNode = async (...args) => {
    try {
      return await readNode(...args);
    } catch (error) {
      report("Read", error);
      return failedValue(error);
    }
  };
}

/**
 * Makes a monitored item record a Bad value ({@link failedValue}) when its node's value source
 * fails, when it samples and when it takes its initial value: node-opcua logged the error and
 * recorded nothing, so the client kept the last good value (or got none) while the source was
 * failing. Reported as `MonitoredItem`.
 */
export function isolateSampling(item: MonitoredItem, report: ValueSourceErrorReporter): void {
  const internals = item as unknown as SampledItem;
  const guard =
    (callback: DataValueCallback): DataValueCallback =>
    (error, dataValue) => {
      if (!error && dataValue) return callback(null, dataValue);
      report("MonitoredItem", error ?? new Error("the value source answered no value"));
      callback(null, failedValue(error));
    };
  const sample = internals.samplingFunc;
  if (sample) {
    internals.samplingFunc = function (context, old, callback) {
      try {
        sample.call(this, context, old, guard(callback));
      } catch (error) {
        guard(callback)(error as Error);
      }
    };
  }
  const acquire = internals.__acquireInitialValue.bind(item);
  internals.__acquireInitialValue = (context, callback) => acquire(context, guard(callback));
}
