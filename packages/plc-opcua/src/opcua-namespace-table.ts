import { KilnError } from "@kiln/core/driver-kit";

// No runtime import of node-opcua here: the driver's entry point imports this module, and
// node-opcua is loaded only when a driver connects (opcua-runtime-loader; the import side-effect
// test: importing @kiln/plc-opcua prints nothing and adds no global).

/**
 * The namespace table an address is bound against: the server's NamespaceArray as last read Good
 * on the current session, or, while it has not been (after a (re)connection or a repair whose
 * read failed or was Bad), the reason (docs/adr/0022, amendment fix13t).
 */
export interface NamespaceTable {
  readonly namespaceArray: readonly string[];
  /** Set while the table has not been read Good on this session: why (the status or error). */
  readonly namespacesUnread?: string | undefined;
}

/**
 * The one way to the namespace URIs of `table`: its NamespaceArray, only when it was read Good on
 * the current session. While it was not (after a (re)connection or a repair whose read failed or
 * was Bad, when the array may still be another server run's), nothing may format or resolve a
 * namespace URI: this throws `KILN_CONNECTION_FAILED` (retryable) naming `action` and the reason
 * (docs/adr/0022, amendments fix13t and fix13w).
 */
export function verifiedNamespaces(table: NamespaceTable, action: string): readonly string[] {
  if (table.namespacesUnread === undefined) return table.namespaceArray;
  const reason = `namespace table not read yet: ${table.namespacesUnread}`;
  throw new KilnError("KILN_CONNECTION_FAILED", `Cannot ${action} yet: ${reason}.`, {
    retryable: true,
    details: { reason },
  });
}
