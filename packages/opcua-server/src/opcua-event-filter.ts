import { type StatusCode, StatusCodes } from "node-opcua-status-code";
import {
  ContentFilterElementResult,
  ContentFilterResult,
  ElementOperand,
  EventFilter,
  EventFilterResult,
} from "node-opcua-types";

/** The bounds an EventFilter must keep to be accepted (from `limits`, see `OpcuaServerOptions`). */
export interface EventFilterBounds {
  /** Most ContentFilterElements in the WhereClause. */
  readonly maxElements: number;
  /** Most elements on one chain of ElementOperands from element 0 (element 0 alone: depth 1). */
  readonly maxDepth: number;
  /** Most FilterOperands of the WhereClause, all its elements together (so of any one element too). */
  readonly maxOperands: number;
  /** Most SelectClauses. */
  readonly maxSelectClauses: number;
}

/**
 * What an EventFilter costs its session while its monitored item lives: its SelectClauses plus
 * its WhereClause's elements and their FilterOperands (0 for any other filter). node-opcua keeps
 * the decoded filter with the item and walks it per event, so memory and time grow with it; a
 * session's items together may cost at most `limits.maxEventFilterCostPerSession`.
 */
export function costOfEventFilter(filter: unknown): number {
  if (!(filter instanceof EventFilter)) return 0;
  let cost = filter.selectClauses?.length ?? 0;
  for (const element of filter.whereClause?.elements ?? []) cost += 1 + (element?.filterOperands?.length ?? 0);
  return cost;
}

/** Why an EventFilter was refused: the item's StatusCode and the per-element result (OPC UA Part 4, 7.7.2 and 7.22.3). */
export interface EventFilterRefusal {
  readonly statusCode: StatusCode;
  readonly filterResult: EventFilterResult;
}

/**
 * Checks the WhereClause of an EventFilter before node-opcua keeps it (it evaluates the clause,
 * recursively from element 0, for every event the item sees). Accepted only a WhereClause that
 * is a tree evaluated in linear time:
 *
 * - at most `maxSelectClauses` SelectClauses, `maxElements` elements, none of them null, and
 *   `maxOperands` FilterOperands over all elements (an `InList` of 999 operands is refused);
 * - every ElementOperand references an element of a HIGHER index than its own (OPC UA Part 4,
 *   7.7.1: the elements form a tree under element 0, evaluation "shall not introduce loops"; a
 *   forward-only reference cannot loop);
 * - no element is referenced by more than one ElementOperand: shared operands (a DAG, e.g. an Or
 *   chain whose every element references the two after it) would make node-opcua evaluate the
 *   shared elements once per path, 2^n times for n elements;
 * - no chain of ElementOperands from element 0 is longer than `maxDepth`.
 *
 * Each element is then evaluated at most once per event. Returns `undefined` for a filter that is
 * not an EventFilter or keeps the bounds, else `BadEventFilterInvalid` with a ContentFilterResult
 * of one result per element (`Good`, or `BadFilterOperandInvalid` with `BadFilterElementInvalid`
 * for each offending ElementOperand, `BadFilterElementInvalid` for a null element or one beyond
 * `maxDepth`); a WhereClause of more than `maxElements` elements gets no per-element results.
 */
export function refusalOfEventFilter(filter: unknown, bounds: EventFilterBounds): EventFilterRefusal | undefined {
  if (!(filter instanceof EventFilter)) return undefined;
  if ((filter.selectClauses?.length ?? 0) > bounds.maxSelectClauses) return refusal([]);
  const elements = filter.whereClause?.elements ?? [];
  if (elements.length === 0) return undefined;
  if (elements.length > bounds.maxElements) return refusal([]);
  let operands = 0;
  for (const element of elements) operands += element?.filterOperands?.length ?? 0;
  if (operands > bounds.maxOperands) return refusal([]);
  const results: ContentFilterElementResult[] = [];
  const referenced = new Set<number>();
  const depth = new Array<number>(elements.length).fill(0);
  depth[0] = 1;
  let invalid = false;
  elements.forEach((element, index) => {
    if (!element) {
      invalid = true;
      results.push(new ContentFilterElementResult({ statusCode: StatusCodes.BadFilterElementInvalid }));
      return;
    }
    let elementInvalid = false;
    const operandStatusCodes = (element.filterOperands ?? []).map((operand) => {
      if (!(operand instanceof ElementOperand)) return StatusCodes.Good;
      const target = operand.index;
      if (target <= index || target >= elements.length || referenced.has(target)) {
        elementInvalid = true;
        return StatusCodes.BadFilterElementInvalid;
      }
      referenced.add(target);
      // Elements are visited in index order and references go forward: the referrer's depth is known.
      if (depth[index]! > 0) depth[target] = depth[index]! + 1;
      return StatusCodes.Good;
    });
    const tooDeep = depth[index]! > bounds.maxDepth;
    invalid ||= elementInvalid || tooDeep;
    results.push(
      new ContentFilterElementResult({
        statusCode: elementInvalid
          ? StatusCodes.BadFilterOperandInvalid
          : tooDeep
            ? StatusCodes.BadFilterElementInvalid
            : StatusCodes.Good,
        operandStatusCodes: elementInvalid ? operandStatusCodes : [],
      }),
    );
  });
  return invalid ? refusal(results) : undefined;
}

function refusal(elementResults: ContentFilterElementResult[]): EventFilterRefusal {
  return {
    statusCode: StatusCodes.BadEventFilterInvalid,
    filterResult: new EventFilterResult({
      selectClauseResults: [],
      whereClauseResult: new ContentFilterResult({ elementResults, elementDiagnosticInfos: [] }),
    }),
  };
}
