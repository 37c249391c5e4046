import { randomBytes } from "node:crypto";
import type { BaseNode, ISessionContext, UAReference } from "node-opcua-address-space-base";
import type { ServerSession } from "node-opcua-server";
import { type StatusCode, StatusCodes } from "node-opcua-status-code";
import { BrowseDescription, BrowseResult, NodeClass, ReferenceDescription } from "node-opcua-types";

/** The ResultMask bits of a BrowseDescription (OPC UA Part 4, 5.8.2.2). */
const REFERENCE_TYPE = 0x01;
const IS_FORWARD = 0x02;
const NODE_CLASS = 0x04;
const BROWSE_NAME = 0x08;
const DISPLAY_NAME = 0x10;
const TYPE_DEFINITION = 0x20;
/** The fields a description fills and the response carries as more than a number: the dear ones. */
const DEAR_FIELDS = [BROWSE_NAME, DISPLAY_NAME, TYPE_DEFINITION] as const;

/** The bounds a {@link BrowsePages} works within (the server's limits; read at each call). */
export interface BrowseBounds {
  /** Most work units of one Browse or BrowseNext call, its nodes or continuation points together (see {@link scanWeight}). */
  readonly maxWorkPerCall: number;
  /** Most continuation points one session holds open for Browse (beyond: `BadNoContinuationPoints`). */
  readonly maxContinuationPoints: number;
}

/** What a Browse reads of node-opcua's address space. */
interface BrowsableAddressSpace {
  findNode(nodeId: unknown): BaseNode | null;
}

/**
 * node-opcua's private record of a node (node-opcua-address-space, base_node_private.js: held on the
 * node under `Symbol("BaseNodePrivate")`): its forward and inverse references, each an
 * insertion-ordered Map. Read to count a node's references and to walk them without copying either
 * map (`allReferences()` copies both and resolves every target: work the size of the node).
 */
interface ReferenceMaps {
  readonly _referenceIdx: ReadonlyMap<unknown, UAReference>;
  readonly _back_referenceIdx: ReadonlyMap<unknown, UAReference>;
}

/**
 * The key node-opcua keeps its private record under, found once on the RootFolder (i=84): a node's
 * children are own properties too (a 40,000-tag folder has 40,000), so the key is looked for on a
 * node with few, never on the node browsed.
 */
let privateKey: symbol | null | undefined;

/** The node's reference maps, or `undefined` where node-opcua keeps them otherwise (then {@link walk} copies). */
export function referenceMapsOf(addressSpace: BrowsableAddressSpace, node: BaseNode): ReferenceMaps | undefined {
  if (privateKey === undefined) {
    const root = addressSpace.findNode("i=84");
    privateKey = root
      ? (Object.getOwnPropertySymbols(root).find((symbol) => symbol.description === "BaseNodePrivate") ?? null)
      : null;
  }
  const record = privateKey
    ? (node as unknown as Record<symbol, Partial<ReferenceMaps> | undefined>)[privateKey]
    : undefined;
  return record?._referenceIdx instanceof Map && record._back_referenceIdx instanceof Map
    ? (record as ReferenceMaps)
    : undefined;
}

/**
 * The node's references the session may know of, forward then inverse, read from node-opcua's maps
 * as they are when each is reached (a Map iterator is live: a reference added before the walk
 * reaches its place is walked, one removed before is not; none is walked twice). A reference to a
 * node `hidden` from the session (another session's diagnostics) is passed over here, before it
 * is counted, charged or paged: for the session it does not exist, so no piece size, continuation
 * point or refusal may depend on it (adv20e F2: a viewer counted other sessions from them). How
 * many are passed over is bounded by the diagnostics nodes the server holds for other sessions.
 */
function* walk(
  maps: ReferenceMaps | undefined,
  node: BaseNode,
  hidden: (target: BaseNode) => boolean,
): Generator<UAReference> {
  const addressSpace = node.addressSpace;
  const all = maps ? chain(maps._referenceIdx.values(), maps._back_referenceIdx.values()) : node.allReferences();
  for (const reference of all) {
    // as node-opcua's allReferences() does, for this reference only: its target node, once
    const target = ((reference as { node?: BaseNode | null }).node ??= addressSpace.findNode(reference.nodeId));
    if (target && hidden(target)) continue;
    yield reference;
  }
}

function* chain<T>(...iterators: Iterable<T>[]): Generator<T> {
  for (const iterator of iterators) yield* iterator;
}

/** A node's Browse in progress: what a continuation point holds. */
interface Cursor {
  readonly node: BaseNode;
  /** The node's references from where the last piece stopped ({@link walk}: a position, no copy). */
  readonly references: Iterator<UAReference>;
  /** The next reference not yet scanned, read one ahead so that the end is known. */
  ahead: IteratorResult<UAReference>;
  /** References scanned and selected by the filters, not yet sent (described when they are). */
  readonly selected: ReferenceDescription[];
  /** The Browse's filters, with only the cheap fields asked (the pieces are described with `resultMask`). */
  readonly selection: BrowseDescription;
  readonly resultMask: number;
  readonly perPiece: number;
}

/** The work of one call: what is left of {@link BrowseBounds.maxWorkPerCall}, and whether anything was done yet. */
interface Budget {
  left: number;
  started: boolean;
}

/**
 * The work units of scanning one reference of a node and, when it is selected, describing and
 * sending it with `resultMask`: 1 to scan it (resolve its target and type, the filters, the
 * session's Browse permission), 1 to describe it, and 1 more for each of BrowseName, DisplayName
 * and TypeDefinition the mask asks (a name, a text, a NodeId read from the target and encoded;
 * NodeClass, ReferenceType and IsForward are numbers at hand). The full mask: 5.
 */
export function scanWeight(resultMask: number): number {
  return 2 + DEAR_FIELDS.filter((field) => (resultMask & field) !== 0).length;
}

/**
 * Browse and BrowseNext answered in pieces, each piece scanned, selected and described when it
 * is sent. node-opcua's Browse scanned every reference of a node, described every one selected
 * (BrowseName, DisplayName, TypeDefinition…) and only then cut the list at
 * RequestedMaxReferencesPerNode, keeping the described rest for BrowseNext, and checked the
 * session's free continuation points last: one Browse of a 4,000-tag folder held the event loop
 * for all 4,000 (adversarial review, issue 20).
 *
 * Here a piece scans the node's references from where the last one stopped, through node-opcua's
 * own filters (reference type, direction, NodeClassMask, the session's context), until it holds
 * `perPiece` references or the call's work budget ({@link BrowseBounds.maxWorkPerCall}, charged
 * {@link scanWeight} per reference before it is scanned) is spent; what is left stays behind a
 * continuation point. A piece may so return fewer references than asked, even none, with a
 * continuation point (Part 4, 7.9: a server may return fewer results); the first piece of each
 * call always scans at least one reference, so a client that follows its points progresses.
 * A Browse node reached with less budget left than one of its references weighs answers
 * `BadNoContinuationPoints` (Part 4, 5.8.2: browse it again in another call), as does one that may
 * need a continuation point (more references than a piece, or than the budget left) while the
 * session holds its most, before anything of it is scanned. Nothing the size of a node happens
 * before these checks: its references are counted from the sizes of node-opcua's reference maps,
 * and a continuation point holds a position in those maps ({@link walk}), not a copy of them; each
 * reference is resolved when its chunk is scanned, after the chunk is charged.
 */
export class BrowsePages {
  readonly #cursors = new WeakMap<ServerSession, Map<string, Cursor>>();

  /**
   * @param hides whether a node does not exist for a session (another session's diagnostics): a
   *   Browse of it answers `BadNodeIdUnknown`, a BrowseNext of a point in it
   *   `BadContinuationPointInvalid` (the point is released). References to such nodes are left out
   *   by node-opcua's filter on the session's context (its Browse permission, which the server
   *   decides by the same rule). @default nothing hidden
   */
  constructor(
    private readonly addressSpace: () => BrowsableAddressSpace | null,
    private readonly bounds: () => BrowseBounds,
    private readonly hides: (session: ServerSession, node: BaseNode) => boolean = () => false,
  ) {}

  /** Answers the BrowseDescriptions of one Browse call of `session`, `perPiece` references per node at most. */
  async browse(
    session: ServerSession,
    descriptions: readonly BrowseDescription[],
    perPiece: number,
  ): Promise<BrowseResult[]> {
    const addressSpace = this.addressSpace();
    if (!addressSpace) return descriptions.map(() => new BrowseResult({ statusCode: StatusCodes.BadInternalError }));
    const { maxWorkPerCall, maxContinuationPoints } = this.bounds();
    const cursors = this.#cursorsOf(session);
    const budget: Budget = { left: maxWorkPerCall, started: false };
    const results: BrowseResult[] = [];
    for (const description of descriptions) {
      const refusal = refusalOf(addressSpace, description);
      if (refusal) {
        results.push(new BrowseResult({ statusCode: refusal }));
        continue;
      }
      const node = addressSpace.findNode(description.nodeId)!;
      if (this.hides(session, node)) {
        results.push(new BrowseResult({ statusCode: StatusCodes.BadNodeIdUnknown }));
        continue;
      }
      const weight = scanWeight(description.resultMask);
      if (budget.started && budget.left < weight) {
        results.push(new BrowseResult({ statusCode: StatusCodes.BadNoContinuationPoints }));
        continue;
      }
      const maps = referenceMapsOf(addressSpace, node);
      // Counted, not copied: the sizes of node-opcua's maps, hidden references included. A node
      // within them surely fits this piece; past them, only the piece itself can tell (below).
      const count = maps ? maps._referenceIdx.size + maps._back_referenceIdx.size : Infinity;
      const surelyFits = count <= perPiece && count * weight <= budget.left;
      const full = cursors.size >= maxContinuationPoints;
      if (full && !surelyFits && !maps) {
        results.push(new BrowseResult({ statusCode: StatusCodes.BadNoContinuationPoints }));
        continue;
      }
      if (node.onFirstBrowseAction) {
        // node-opcua's browseWithAutomaticExpansion: a node that builds its children when first browsed
        await node.onFirstBrowseAction().catch(() => undefined);
        node.onFirstBrowseAction = undefined;
      }
      const references = walk(maps, node, (target) => this.hides(session, target));
      const cursor: Cursor = {
        node,
        references,
        ahead: references.next(),
        selected: [],
        selection: new BrowseDescription({
          ...description,
          referenceTypeId: description.referenceTypeId?.value === 0 ? null : description.referenceTypeId,
          resultMask: REFERENCE_TYPE | IS_FORWARD,
        }),
        resultMask: description.resultMask,
        perPiece,
      };
      if (full && !surelyFits) {
        // The session holds its most points: the node is answered only if its visible references
        // fit this piece, which is scanned (and charged) to find out; hidden ones are not counted.
        const result = this.#answer(session, cursors, cursor, budget, undefined, false);
        results.push(result ?? new BrowseResult({ statusCode: StatusCodes.BadNoContinuationPoints }));
        continue;
      }
      results.push(this.#answer(session, cursors, cursor, budget, undefined, true)!);
    }
    return results;
  }

  /** Answers the continuation points of one BrowseNext call of `session` (released when `release`). */
  browseNext(session: ServerSession, continuationPoints: readonly Buffer[], release: boolean): BrowseResult[] {
    const cursors = this.#cursorsOf(session);
    const budget: Budget = { left: this.bounds().maxWorkPerCall, started: false };
    return continuationPoints.map((point) => {
      const key = point?.toString("hex") ?? "";
      const cursor = cursors.get(key);
      if (!cursor) return new BrowseResult({ statusCode: StatusCodes.BadContinuationPointInvalid });
      if (this.hides(session, cursor.node)) {
        // Hidden since the Browse (the session changed user, a grant was revoked): no such point.
        cursors.delete(key);
        return new BrowseResult({ statusCode: StatusCodes.BadContinuationPointInvalid });
      }
      if (release) {
        cursors.delete(key);
        return new BrowseResult({ statusCode: StatusCodes.Good, references: [] });
      }
      return this.#answer(session, cursors, cursor, budget, key, true)!;
    });
  }

  /**
   * The cursor's next piece, with a continuation point (kept under `key`, or a new one) when
   * references are left; `undefined` when references are left and no point may be made (`mayHold`
   * false: the session holds its most).
   */
  #answer(
    session: ServerSession,
    cursors: Map<string, Cursor>,
    cursor: Cursor,
    budget: Budget,
    key: string | undefined,
    mayHold: boolean,
  ): BrowseResult | undefined {
    const references = this.#piece(session, cursor, budget);
    if (cursor.ahead.done && cursor.selected.length === 0) {
      if (key !== undefined) cursors.delete(key);
      return new BrowseResult({ statusCode: StatusCodes.Good, references });
    }
    if (!mayHold) return undefined;
    let point: Buffer;
    if (key === undefined) {
      // Random, not counted: a counter shared by every session told each one how many paged
      // Browses the others made (ADR 0036, adv20j F1), as HistoryRead's points are made.
      do point = randomBytes(16);
      while (cursors.has(point.toString("hex")));
      cursors.set(point.toString("hex"), cursor);
    } else {
      point = Buffer.from(key, "hex");
    }
    return new BrowseResult({ statusCode: StatusCodes.Good, references, continuationPoint: point });
  }

  /**
   * Sends the references selected and not yet sent, then scans the cursor's references from where
   * it stopped, a chunk at a time, each chunk charged before it is scanned, until `perPiece` are
   * selected, the references end or the budget is spent; describes the sent ones with the Browse's
   * ResultMask. Once the piece is full it scans on (charged as well) until one more reference is
   * selected or the references end, so that a continuation point is given only where a reference
   * follows: a node whose references fit the piece carries none, and the piece after a point is
   * empty only when the budget ran out before a selected reference was found.
   */
  #piece(session: ServerSession, cursor: Cursor, budget: Budget): ReferenceDescription[] {
    const weight = scanWeight(cursor.resultMask);
    const browseNode = cursor.node.browseNode as (
      this: BaseNode,
      description: BrowseDescription,
      context: ISessionContext,
    ) => ReferenceDescription[];
    const take = (): void => {
      const wanted = cursor.perPiece - piece.length;
      piece.push(...cursor.selected.splice(0, wanted));
    };
    const piece: ReferenceDescription[] = [];
    take();
    // past a full piece, chunks of 1, 2, 4… references: one more selected is all that is looked for
    let ahead = 1;
    // scan while the piece wants more, then while nothing selected is left to tell that more follow
    while (!cursor.ahead.done && (piece.length < cursor.perPiece || cursor.selected.length === 0)) {
      const affordable = Math.floor(budget.left / weight);
      if (affordable <= 0 && budget.started) break;
      const wanted = cursor.perPiece - piece.length;
      const size = Math.min(Math.max(affordable, 1), wanted > 0 ? wanted : ahead);
      if (wanted <= 0) ahead = Math.min(ahead * 2, cursor.perPiece);
      budget.left -= size * weight;
      budget.started = true;
      const chunk: UAReference[] = [];
      while (chunk.length < size && !cursor.ahead.done) {
        chunk.push(cursor.ahead.value);
        cursor.ahead = cursor.references.next();
      }
      budget.left += (size - chunk.length) * weight; // the references ended: what was not scanned is not spent
      // node-opcua's own Browse of the node (its filters, the session's context), over this chunk only.
      const over = Object.create(cursor.node, { allReferences: { value: () => chunk } }) as BaseNode;
      cursor.selected.push(...browseNode.call(over, cursor.selection, session.sessionContext));
      take();
    }
    return piece.map((selected) => describe(cursor.node.addressSpace, selected, cursor.resultMask));
  }

  #cursorsOf(session: ServerSession): Map<string, Cursor> {
    let cursors = this.#cursors.get(session);
    if (!cursors) {
      cursors = new Map();
      this.#cursors.set(session, cursors);
    }
    return cursors;
  }
}

/**
 * Why a BrowseDescription cannot be browsed, as node-opcua's `browseSingleNode` answers it: an
 * invalid BrowseDirection, a ReferenceTypeId that is not a reference type, an unknown node.
 */
function refusalOf(addressSpace: BrowsableAddressSpace, description: BrowseDescription): StatusCode | undefined {
  // BrowseDirection: Forward 0, Inverse 1, Both 2 (Part 4, 7.5); absent is Forward.
  const direction = (description.browseDirection as number | null | undefined) ?? 0;
  if (direction !== 0 && direction !== 1 && direction !== 2) {
    return StatusCodes.BadBrowseDirectionInvalid;
  }
  const type = description.referenceTypeId;
  if (type && type.value !== 0 && addressSpace.findNode(type)?.nodeClass !== NodeClass.ReferenceType) {
    return StatusCodes.BadReferenceTypeIdInvalid;
  }
  return addressSpace.findNode(description.nodeId) ? undefined : StatusCodes.BadNodeIdUnknown;
}

/**
 * The full description of a selected reference (node-opcua's `_makeReferenceDescription`, which
 * no entry of the package exports): the fields `resultMask` asks, read from the target node now.
 */
function describe(
  addressSpace: BrowsableAddressSpace,
  selected: ReferenceDescription,
  resultMask: number,
): ReferenceDescription {
  const target = addressSpace.findNode(selected.nodeId) as
    (BaseNode & { typeDefinition?: ReferenceDescription["typeDefinition"] }) | null;
  const referenceTypeId = resultMask & REFERENCE_TYPE ? selected.referenceTypeId : null;
  if (!target) {
    return new ReferenceDescription({ isForward: selected.isForward, nodeId: selected.nodeId, referenceTypeId });
  }
  const typed = target.nodeClass === NodeClass.Object || target.nodeClass === NodeClass.Variable;
  return new ReferenceDescription({
    referenceTypeId,
    isForward: resultMask & IS_FORWARD ? selected.isForward : false,
    nodeId: target.nodeId,
    browseName: resultMask & BROWSE_NAME ? target.browseName : null,
    displayName: resultMask & DISPLAY_NAME ? (target.displayName[0] ?? null) : null,
    nodeClass: resultMask & NODE_CLASS ? target.nodeClass : NodeClass.Unspecified,
    typeDefinition: resultMask & TYPE_DEFINITION && typed ? target.typeDefinition : undefined,
  } as ConstructorParameters<typeof ReferenceDescription>[0]);
}
