import {
  AttributeIds,
  DataType,
  DataValue as DataValueClass,
  ReadRequest,
  RepublishRequest,
  resolveNodeId,
  VariableIds,
  WriteRequest,
  type ClientSession,
  type DataValue,
  type TransferSubscriptionsResponse,
} from "node-opcua-client";
import { describe, expect, test } from "vitest";
import { linkRequestKind, readServerInfo, readWithinLinkBound, refuseSubscriptionTransfers } from "./opcua-connection";

// CI on 90b0f66: a stall right after a reconnect was declared at requestMs (10 s), not at 2
// keep-alive periods: a request of the driver's or node-opcua's own upkeep was in flight, and the
// link watchdog waited for it as for an application's read (docs/adr/0022, amendment fix13n).
describe("linkRequestKind: which requests hold the link stall bound", () => {
  const value = (id: number) => ({ nodeId: resolveNodeId(id), attributeId: AttributeIds.Value });
  const threeValues = [
    value(VariableIds.Server_ServiceLevel),
    value(VariableIds.Server_NamespaceArray),
    value(VariableIds.Server_ServerStatus_CurrentTime),
  ];

  test("an application's read waits until its deadline; node-opcua's keep-alive read and a Republish do not", () => {
    expect(linkRequestKind(new ReadRequest({ nodesToRead: threeValues }))).toBe("other");
    expect(linkRequestKind(new WriteRequest({}))).toBe("other");
    expect(linkRequestKind(new ReadRequest({ nodesToRead: [value(VariableIds.Server_ServerStatus_State)] }))).toBe(
      "keepAlive",
    );
    expect(linkRequestKind(new RepublishRequest({ subscriptionId: 1, retransmitSequenceNumber: 7 }))).toBe("keepAlive");
  });

  test("the driver's read of current values is bounded like a keep-alive while sent, and only that read", async () => {
    const kinds: string[] = [];
    const session = {
      // node-opcua sends within the call while the channel is open: the driver classifies it then.
      read(nodes: unknown[]): Promise<DataValue[]> {
        kinds.push(linkRequestKind(new ReadRequest({ nodesToRead: nodes as typeof threeValues }), session));
        return Promise.resolve([]);
      },
    } as unknown as ClientSession;
    await readWithinLinkBound(session, threeValues);
    // The same session's next read is an application's again.
    await session.read(threeValues, 0);
    expect(kinds).toEqual(["keepAlive", "other"]);
  });

  test("a read that throws while sent does not leave its session marked", () => {
    const session = {
      read(): Promise<DataValue[]> {
        throw new Error("session closed");
      },
    } as unknown as ClientSession;
    expect(() => readWithinLinkBound(session, threeValues)).toThrow("session closed");
    expect(linkRequestKind(new ReadRequest({ nodesToRead: threeValues }), session)).toBe("other");
  });
});

// Adversarial review adv13, HIGH-1/HIGH-2: node-opcua's session repair transferred subscription
// ids that, after a restart, were another client's. Kiln's session takes no subscription over.
describe("refuseSubscriptionTransfers", () => {
  type Transfer = (
    request: { subscriptionIds: number[] },
    callback?: (error: Error | null, response?: TransferSubscriptionsResponse) => void,
  ) => Promise<TransferSubscriptionsResponse> | undefined;

  test("node-opcua's callback form: every id refused, nothing sent to the server", async () => {
    const session = {} as ClientSession;
    refuseSubscriptionTransfers(session);
    const transfer = (session as unknown as { transferSubscriptions: Transfer }).transferSubscriptions;
    const response = await new Promise<TransferSubscriptionsResponse | undefined>((resolve, reject) =>
      transfer({ subscriptionIds: [1000, 1001] }, (error, answer) => (error ? reject(error) : resolve(answer))),
    );
    expect(response?.results?.map((result) => result.statusCode.name)).toEqual([
      "BadUserAccessDenied",
      "BadUserAccessDenied",
    ]);
  });

  test("the promise form, and no ids: an empty answer", async () => {
    const session = {} as ClientSession;
    refuseSubscriptionTransfers(session);
    const transfer = (session as unknown as { transferSubscriptions: Transfer }).transferSubscriptions;
    expect((await transfer({ subscriptionIds: [] }))?.results).toEqual([]);
    expect((await transfer({ subscriptionIds: [7] }))?.results?.[0]?.statusCode.isGood()).toBe(false);
  });
});

// Adversarial review adv13m, MEDIUM-3: a server whose MaxNodesPerRead is below the 5 values of the
// server-info read refused it (BadTooManyOperations) and the connect failed. The values are read
// one by one then; a limit the server will not give is "no limit" (docs/adr/0022, amendment fix13o).
describe("readServerInfo on a server that refuses the combined read", () => {
  const fault = (name: string, code: number) =>
    Object.assign(new Error(`serviceResult = ${name} (0x${code.toString(16)})`), {
      response: { responseHeader: { serviceResult: { value: code } } },
    });
  const TOO_MANY = 0x80100000;
  const number = (value: number) => new DataValueClass({ value: { dataType: DataType.UInt32, value } });
  const namespaces = new DataValueClass({
    value: { dataType: DataType.String, value: ["http://opcfoundation.org/UA/", "urn:plc"] },
  });

  function fakeSession(answer: (count: number, index: number) => DataValue): {
    session: ClientSession;
    sizes: number[];
  } {
    const sizes: number[] = [];
    let calls = 0;
    const session = {
      read: (nodes: unknown[]) => {
        sizes.push(nodes.length);
        const index = calls++ - 1;
        if (nodes.length > 2) return Promise.reject(fault("BadTooManyOperations", TOO_MANY));
        try {
          return Promise.resolve([answer(nodes.length, index)]);
        } catch (error) {
          return Promise.reject(error as Error);
        }
      },
    } as unknown as ClientSession;
    return { session, sizes };
  }

  test("one Read per value after BadTooManyOperations; the server's limits kept, capped by the options", async () => {
    const { session, sizes } = fakeSession((_count, index) => (index === 0 ? namespaces : number(2)));
    const info = await readServerInfo(session, { maxNodesPerWrite: 1 });
    expect(sizes).toEqual([5, 1, 1, 1, 1, 1]);
    expect(info.namespaceArray).toEqual(["http://opcfoundation.org/UA/", "urn:plc"]);
    expect(info.limits).toEqual({
      maxNodesPerRead: 2,
      maxNodesPerWrite: 1,
      maxNodesPerBrowse: 2,
      maxMonitoredItemsPerCall: 2,
    });
  });

  test("a limit whose own Read is refused is no limit (the option's cap if any); a refused namespace array is not read (no default)", async () => {
    const { session } = fakeSession((_count, index) => {
      if (index === 0) return namespaces;
      if (index === 2) throw fault("BadServiceUnsupported", 0x800b0000);
      return number(2);
    });
    const info = await readServerInfo(session, { maxNodesPerBrowse: 50 });
    expect(info.limits).toEqual({
      maxNodesPerRead: 2,
      maxNodesPerWrite: 0,
      maxNodesPerBrowse: 2,
      maxMonitoredItemsPerCall: 2,
    });

    const refused = fakeSession((_count, index) => {
      if (index === 0) throw fault("BadUserAccessDenied", 0x801f0000);
      return number(2);
    });
    // Never replaced by a default table (adv13s HIGH-2): not read, with the refusal.
    const unread = await readServerInfo(refused.session, {});
    expect(unread.namespaceArray).toBeUndefined();
    expect(unread.namespacesUnread).toMatch(/BadUserAccessDenied/);
    expect(unread.limits.maxNodesPerRead).toBe(2);
  });

  test("a connection loss on the combined read is thrown, not answered by reading one by one", async () => {
    const sizes: number[] = [];
    const session = {
      read: (nodes: unknown[]) => {
        sizes.push(nodes.length);
        return Promise.reject(fault("BadConnectionClosed", 0x80ae0000));
      },
    } as unknown as ClientSession;
    await expect(readServerInfo(session, {})).rejects.toThrow(/BadConnectionClosed/);
    expect(sizes).toEqual([5]);
  });
});
