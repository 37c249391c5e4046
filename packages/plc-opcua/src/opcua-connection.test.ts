import {
  AttributeIds,
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
import { linkRequestKind, readWithinLinkBound, refuseSubscriptionTransfers } from "./opcua-connection";

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
