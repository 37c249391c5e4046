import { type StatusCode, StatusCodes } from "node-opcua-status-code";
import {
  type ContentFilterElement,
  ContentFilterElementResult,
  ContentFilterResult,
  ElementOperand,
  EventFilter,
  EventFilterResult,
  FilterOperator,
  LiteralOperand,
  SimpleAttributeOperand,
} from "node-opcua-types";
import { DataType, type Variant } from "node-opcua-variant";

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
 * - no chain of ElementOperands from element 0 is longer than `maxDepth`;
 * - every element is one node-opcua evaluates as OPC UA Part 4, 7.7.3 defines it
 *   ({@link refusalOfOperator}): any other would be accepted and then match no event at all.
 *
 * A SelectClause with an IndexRange is refused too (node-opcua returned the whole field): the
 * answer's `selectClauseResults` has `BadIndexRangeInvalid` for it and `Good` for the others, and
 * no per-element results (OPC UA Part 4, 7.22.3).
 *
 * Each element is then evaluated at most once per event. Returns `undefined` for a filter that is
 * not an EventFilter or keeps the bounds, else `BadEventFilterInvalid` with a ContentFilterResult
 * of one result per element (`Good`, or `BadFilterOperandInvalid` with `BadFilterElementInvalid`
 * for each offending ElementOperand, `BadFilterElementInvalid` for a null element or one beyond
 * `maxDepth`, or what {@link refusalOfOperator} answers); a WhereClause of more than `maxElements`
 * elements gets no per-element results.
 */
export function refusalOfEventFilter(filter: unknown, bounds: EventFilterBounds): EventFilterRefusal | undefined {
  if (!(filter instanceof EventFilter)) return undefined;
  if ((filter.selectClauses?.length ?? 0) > bounds.maxSelectClauses) return refusal([]);
  const selects = (filter.selectClauses ?? []).map((clause) =>
    ranged(clause) ? StatusCodes.BadIndexRangeInvalid : StatusCodes.Good,
  );
  if (selects.some((code) => code !== StatusCodes.Good)) return refusal([], selects);
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
    const operator = elementInvalid || tooDeep ? undefined : refusalOfOperator(element);
    invalid ||= elementInvalid || tooDeep || operator !== undefined;
    results.push(
      operator ??
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

/**
 * The operators node-opcua's `checkFilter` evaluates (node-opcua-service-filter,
 * `checkFilterAtIndex`), with the operand counts of OPC UA Part 4, Table 119/120 (InList: 1..n,
 * as node-opcua takes it: the alarm collector of the OPC Foundation CTT starts with an InList of
 * no list and fills it by ModifyMonitoredItems; with no list it matches nothing, as 7.7.3 says).
 * Every other operator (IsNull, Like, Cast, BitwiseAnd, BitwiseOr, InView, RelatedTo) node-opcua
 * logs "currently not supported" and evaluates FALSE for every event.
 */
const OPERAND_COUNTS: ReadonlyMap<FilterOperator, readonly [min: number, max: number]> = new Map([
  [FilterOperator.Equals, [2, 2]],
  [FilterOperator.GreaterThan, [2, 2]],
  [FilterOperator.LessThan, [2, 2]],
  [FilterOperator.GreaterThanOrEqual, [2, 2]],
  [FilterOperator.LessThanOrEqual, [2, 2]],
  [FilterOperator.Between, [3, 3]],
  [FilterOperator.InList, [1, Number.POSITIVE_INFINITY]],
  [FilterOperator.And, [2, 2]],
  [FilterOperator.Or, [2, 2]],
  [FilterOperator.Not, [1, 1]],
  [FilterOperator.OfType, [1, 1]],
]);

/** The comparisons, whose LiteralOperands must hold a value that can compare TRUE. */
const COMPARISONS: ReadonlySet<FilterOperator> = new Set([
  FilterOperator.Equals,
  FilterOperator.GreaterThan,
  FilterOperator.LessThan,
  FilterOperator.GreaterThanOrEqual,
  FilterOperator.LessThanOrEqual,
  FilterOperator.Between,
]);

/**
 * Why node-opcua would evaluate the element FALSE for every event, as its ContentFilterElementResult
 * (OPC UA Part 4, 7.7.3 and Table 129), or `undefined` when it evaluates it as 7.7.3 defines:
 *
 * - an operator it does not evaluate (see {@link OPERAND_COUNTS}): `BadFilterOperatorUnsupported`;
 * - a number of operands the operator does not take: `BadFilterOperandCountMismatch`;
 * - `BadFilterOperandInvalid`, with `BadFilterOperandInvalid` for each offending operand (`Good`
 *   for the others): an OfType operand that is not a NodeId LiteralOperand; an InList whose
 *   operand 0 is not a SimpleAttributeOperand, or one of whose list operands is not a
 *   LiteralOperand; a comparison (Equals, GreaterThan, LessThan, GreaterThanOrEqual,
 *   LessThanOrEqual, Between) with a Null or NaN LiteralOperand, which compares NULL or FALSE
 *   with every value (Part 4, 7.7.3: use IsNull for the one, nothing equals NaN); an attribute
 *   operand with an IndexRange (node-opcua compares the whole field).
 */
function refusalOfOperator(element: ContentFilterElement): ContentFilterElementResult | undefined {
  const counts = OPERAND_COUNTS.get(element.filterOperator);
  if (!counts) return new ContentFilterElementResult({ statusCode: StatusCodes.BadFilterOperatorUnsupported });
  const operands = element.filterOperands ?? [];
  if (operands.length < counts[0] || operands.length > counts[1]) {
    return new ContentFilterElementResult({ statusCode: StatusCodes.BadFilterOperandCountMismatch });
  }
  const valid = (operand: unknown, position: number): boolean => {
    switch (element.filterOperator) {
      case FilterOperator.OfType:
        return operand instanceof LiteralOperand && operand.value?.dataType === DataType.NodeId;
      case FilterOperator.InList:
        return position === 0
          ? operand instanceof SimpleAttributeOperand && !ranged(operand)
          : operand instanceof LiteralOperand;
      default:
        if (ranged(operand)) return false;
        return !(
          COMPARISONS.has(element.filterOperator) &&
          operand instanceof LiteralOperand &&
          comparesNothing(operand.value)
        );
    }
  };
  const codes = operands.map((operand, position) =>
    valid(operand, position) ? StatusCodes.Good : StatusCodes.BadFilterOperandInvalid,
  );
  if (codes.every((code) => code === StatusCodes.Good)) return undefined;
  return new ContentFilterElementResult({ statusCode: StatusCodes.BadFilterOperandInvalid, operandStatusCodes: codes });
}

/** A literal Null, or a NaN Float or Double: no comparison with it is ever TRUE. */
function comparesNothing(value: Variant | null | undefined): boolean {
  if (!value || value.dataType === DataType.Null) return true;
  return (value.dataType === DataType.Double || value.dataType === DataType.Float) && Number.isNaN(value.value);
}

/**
 * Whether the operand carries an IndexRange (a SimpleAttributeOperand or AttributeOperand whose
 * `indexRange` is not empty): node-opcua ignores it and hands over the whole field, so Kiln
 * refuses it rather than answer more than was asked.
 */
function ranged(operand: unknown): boolean {
  const range = (operand as { indexRange?: { isEmpty?: () => boolean } | null } | null)?.indexRange;
  return typeof range?.isEmpty === "function" && !range.isEmpty();
}

function refusal(
  elementResults: ContentFilterElementResult[],
  selectClauseResults: StatusCode[] = [],
): EventFilterRefusal {
  return {
    statusCode: StatusCodes.BadEventFilterInvalid,
    filterResult: new EventFilterResult({
      selectClauseResults,
      whereClauseResult: new ContentFilterResult({ elementResults, elementDiagnosticInfos: [] }),
    }),
  };
}
