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
 * The node's references, forward then inverse, read from node-opcua's maps as they are when each is
 * reached (a Map iterator is live: a reference added before the walk reaches its place is walked, one
 * removed before is not; none is walked twice).
 */
function* walk(maps: ReferenceMaps | undefined, node: BaseNode): Generator<UAReference> {
  if (!maps) {
    yield* node.allReferences();
    return;
  }
  yield* maps._referenceIdx.values();
  yield* maps._back_referenceIdx.values();
}

/** A node's Browse in progress: what a continuation point holds. */
interface Cursor {
  readonly node: BaseNode;
  /** The node's references from where the last piece stopped ({@link walk}: a position, no copy). */
  readonly references: Iterator<UAReference>;
  /** The next reference not yet scanned, read one ahead so that the end is known. */
  ahead: IteratorResult<UAReference>;
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

let lastKey = 0;

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
      const maps = referenceMapsOf(addressSpace, node);
      // counted, not copied: the sizes of node-opcua's maps (unknown without them: may need a point)
      const count = maps ? maps._referenceIdx.size + maps._back_referenceIdx.size : Infinity;
      const mayNeedPoint = count > perPiece || count * weight > budget.left;
      if ((budget.started && budget.left < weight) || (mayNeedPoint && cursors.size >= maxContinuationPoints)) {
        results.push(new BrowseResult({ statusCode: StatusCodes.BadNoContinuationPoints }));
        continue;
      }
      if (node.onFirstBrowseAction) {
        // node-opcua's browseWithAutomaticExpansion: a node that builds its children when first browsed
        await node.onFirstBrowseAction().catch(() => undefined);
        node.onFirstBrowseAction = undefined;
      }
      const references = walk(maps, node);
      const cursor: Cursor = {
        node,
        references,
        ahead: references.next(),
        selection: new BrowseDescription({
          ...description,
          referenceTypeId: description.referenceTypeId?.value === 0 ? null : description.referenceTypeId,
          resultMask: REFERENCE_TYPE | IS_FORWARD,
        }),
        resultMask: description.resultMask,
        perPiece,
      };
      results.push(this.#answer(session, cursors, cursor, budget, undefined));
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
      return this.#answer(session, cursors, cursor, budget, key);
    });
  }

  /** The cursor's next piece, with a continuation point (kept under `key`, or a new one) when references are left. */
  #answer(
    session: ServerSession,
    cursors: Map<string, Cursor>,
    cursor: Cursor,
    budget: Budget,
    key: string | undefined,
  ): BrowseResult {
    const references = this.#piece(session, cursor, budget);
    if (cursor.ahead.done) {
      if (key !== undefined) cursors.delete(key);
      return new BrowseResult({ statusCode: StatusCodes.Good, references });
    }
    let point: Buffer;
    if (key === undefined) {
      lastKey += 1;
      point = Buffer.from(`b${lastKey}`, "utf8");
      cursors.set(point.toString("hex"), cursor);
    } else {
      point = Buffer.from(key, "hex");
    }
    return new BrowseResult({ statusCode: StatusCodes.Good, references, continuationPoint: point });
  }

  /**
   * Scans the cursor's references from where it stopped, a chunk at a time, each chunk charged
   * before it is scanned, until `perPiece` are selected, the references end or the budget is spent;
   * describes the selected ones with the Browse's ResultMask.
   */
  #piece(session: ServerSession, cursor: Cursor, budget: Budget): ReferenceDescription[] {
    const weight = scanWeight(cursor.resultMask);
    const browseNode = cursor.node.browseNode as (
      this: BaseNode,
      description: BrowseDescription,
      context: ISessionContext,
    ) => ReferenceDescription[];
    const piece: ReferenceDescription[] = [];
    const addressSpace = cursor.node.addressSpace;
    while (piece.length < cursor.perPiece && !cursor.ahead.done) {
      const affordable = Math.floor(budget.left / weight);
      if (affordable <= 0 && budget.started) break;
      const size = Math.min(Math.max(affordable, 1), cursor.perPiece - piece.length);
      budget.left -= size * weight;
      budget.started = true;
      const chunk: UAReference[] = [];
      while (chunk.length < size && !cursor.ahead.done) {
        const reference = cursor.ahead.value;
        // as node-opcua's allReferences() does, for this reference only: its target node, once
        (reference as { node?: BaseNode | null }).node ??= addressSpace.findNode(reference.nodeId);
        chunk.push(reference);
        cursor.ahead = cursor.references.next();
      }
      budget.left += (size - chunk.length) * weight; // the references ended: what was not scanned is not spent
      // node-opcua's own Browse of the node (its filters, the session's context), over this chunk only.
      const over = Object.create(cursor.node, { allReferences: { value: () => chunk } }) as BaseNode;
      for (const selected of browseNode.call(over, cursor.selection, session.sessionContext)) {
        piece.push(describe(cursor.node.addressSpace, selected, cursor.resultMask));
      }
    }
    return piece;
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
