import { NodeIdType } from "node-opcua";
import { describe, expect, test } from "vitest";
import { formatNodeAddress, parseNodeAddress, resolveNodeAddress } from "./opcua-node-id";

const URIS = ["http://opcfoundation.org/UA/", "urn:server", "urn:kiln:plant"];
const NAMESPACES = { namespaceArray: URIS };

describe("parseNodeAddress", () => {
  test.each([
    ["ns=2;s=Reactor.Pressure", 2, NodeIdType.STRING, "Reactor.Pressure"],
    ["ns=3;i=1001", 3, NodeIdType.NUMERIC, 1001],
    ["i=2258", 0, NodeIdType.NUMERIC, 2258],
    ["ns=4;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", 4, NodeIdType.GUID, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"],
    ["ns=2;s=Line;Station=3", 2, NodeIdType.STRING, "Line;Station=3"],
  ])("parses %s", (text, namespace, type, value) => {
    const address = parseNodeAddress(text);
    expect(address.namespaceUri).toBeUndefined();
    expect(address.nodeId.namespace).toBe(namespace);
    expect(address.nodeId.identifierType).toBe(type);
    expect(address.nodeId.value).toEqual(value);
  });

  test("parses ns=1;b= (opaque) identifiers", () => {
    const address = parseNodeAddress("ns=1;b=AQID");
    expect(address.nodeId.identifierType).toBe(NodeIdType.BYTESTRING);
    expect([...(address.nodeId.value as Buffer)]).toEqual([1, 2, 3]);
  });

  test("keeps the namespace URI of nsu= addresses, whatever the identifier type", () => {
    expect(parseNodeAddress("nsu=urn:kiln:plant;s=Reactor.Pressure")).toMatchObject({
      namespaceUri: "urn:kiln:plant",
      nodeId: { identifierType: NodeIdType.STRING, value: "Reactor.Pressure" },
    });
    expect(parseNodeAddress("nsu=http://example.com/UA/;i=42")).toMatchObject({
      namespaceUri: "http://example.com/UA/",
      nodeId: { identifierType: NodeIdType.NUMERIC, value: 42 },
    });
  });

  test("accepts the object form, with or without a namespace URI", () => {
    expect(parseNodeAddress({ nodeId: "ns=2;s=A" }).nodeId.toString()).toBe("ns=2;s=A");
    const withUri = parseNodeAddress({ nodeId: "s=A", namespaceUri: "urn:kiln:plant" });
    expect(withUri).toMatchObject({ namespaceUri: "urn:kiln:plant", text: "nsu=urn:kiln:plant;s=A" });
  });

  test.each([
    ["", /empty/],
    ["Reactor.Pressure", /not a valid NodeId/],
    ["ns=two;s=A", /not a valid NodeId/],
    ["nsu=urn:kiln:plant", /nsu=<namespace uri>/],
    ["nsu=;s=A", /nsu=<namespace uri>/],
  ])("rejects %j with a message saying what is wrong", (text, message) => {
    expect(() => parseNodeAddress(text)).toThrow(message);
  });

  test("rejects object forms with unknown fields or no nodeId", () => {
    expect(() => parseNodeAddress({ nodeId: "ns=2;s=A", node: 1 })).toThrow(/unknown address field/);
    expect(() => parseNodeAddress({ namespaceUri: "urn:x" })).toThrow(/nodeId/);
    expect(() => parseNodeAddress(42)).toThrow(/NodeId string/);
  });
});

describe("resolveNodeAddress", () => {
  test("looks nsu= namespaces up in the server's namespace array", () => {
    const nodeId = resolveNodeAddress(parseNodeAddress("nsu=urn:kiln:plant;s=A"), NAMESPACES);
    expect(nodeId?.toString()).toBe("ns=2;s=A");
    const moved = resolveNodeAddress(parseNodeAddress("nsu=urn:kiln:plant;s=A"), {
      namespaceArray: [...URIS, "x"].reverse(),
    });
    expect(moved?.toString()).toBe("ns=1;s=A");
  });

  test("returns undefined when the server does not have the namespace", () => {
    expect(resolveNodeAddress(parseNodeAddress("nsu=urn:other;s=A"), NAMESPACES)).toBeUndefined();
  });

  test("leaves ns= addresses as written", () => {
    expect(resolveNodeAddress(parseNodeAddress("ns=7;i=3"), NAMESPACES)?.toString()).toBe("ns=7;i=3");
  });
});

describe("formatNodeAddress", () => {
  test("writes nsu= for every namespace but 0, and round-trips through parse and resolve", () => {
    const nodeId = resolveNodeAddress(parseNodeAddress("ns=2;s=Reactor.Pressure"), NAMESPACES)!;
    const text = formatNodeAddress(nodeId, NAMESPACES);
    expect(text).toBe("nsu=urn:kiln:plant;s=Reactor.Pressure");
    expect(resolveNodeAddress(parseNodeAddress(text), NAMESPACES)?.toString()).toBe("ns=2;s=Reactor.Pressure");
    expect(formatNodeAddress(parseNodeAddress("i=2258").nodeId, NAMESPACES)).toBe("i=2258");
    expect(formatNodeAddress(parseNodeAddress("ns=9;i=1").nodeId, NAMESPACES)).toBe("ns=9;i=1");
  });

  test("refuses to format or resolve a namespace URI from a table not read on this session (fix13w)", () => {
    // The array is the previous server run's; the current session's read failed.
    const stale = { namespaceArray: URIS, namespacesUnread: "BadWaitingForInitialData" };
    const nodeId = resolveNodeAddress(parseNodeAddress("ns=2;s=A"), NAMESPACES)!;
    expect(() => formatNodeAddress(nodeId, stale)).toThrow(
      expect.objectContaining({ code: "KILN_CONNECTION_FAILED", retryable: true }),
    );
    expect(() => resolveNodeAddress(parseNodeAddress("nsu=urn:kiln:plant;s=A"), stale)).toThrow(
      /namespace table not read yet: BadWaitingForInitialData/,
    );
    // Namespace 0 and numeric ns= addresses need no table.
    expect(formatNodeAddress(parseNodeAddress("i=2258").nodeId, stale)).toBe("i=2258");
    expect(resolveNodeAddress(parseNodeAddress("ns=7;i=3"), stale)?.toString()).toBe("ns=7;i=3");
  });
});
