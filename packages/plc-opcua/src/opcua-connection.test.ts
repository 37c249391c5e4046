import {
  ActivateSessionResponse,
  AttributeIds,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  DataType,
  DataValue as DataValueClass,
  PublishRequest,
  PublishResponse,
  ReadRequest,
  ReadResponse,
  RepublishRequest,
  RepublishResponse,
  resolveNodeId,
  VariableIds,
  WriteRequest,
  type ClientSession,
  type DataValue,
  type TransferSubscriptionsResponse,
} from "node-opcua-client";
import { createServer, type Socket } from "node:net";
import { describe, expect, test } from "vitest";
import {
  applyStageMs,
  attemptTimedOut,
  connectStageMs,
  isRepairResponse,
  linkRequestKind,
  readServerInfo,
  refuseSubscriptionTransfers,
  trackedTransports,
} from "./opcua-connection";
import { asApplicationCall, asUpkeepCall, markApplicationRequests, upkeepPurpose } from "./opcua-request-origin";

// CI on 90b0f66 and adv13s M1 / adv13p M1: a stall was declared at requestMs (10 s), not at the
// stall bound, while a request of the driver's or node-opcua's own upkeep was in flight: the link
// watchdog waited for it as for an application's read. The rule is by origin: only requests sent
// inside an application's call wait until their deadline (docs/adr/0022, amendments fix13n, fix13u).
describe("linkRequestKind: which requests hold the link stall bound", () => {
  const value = (id: number) => ({ nodeId: resolveNodeId(id), attributeId: AttributeIds.Value });
  const threeValues = [
    value(VariableIds.Server_ServiceLevel),
    value(VariableIds.Server_NamespaceArray),
    value(VariableIds.Server_ServerStatus_CurrentTime),
  ];

  /** A session whose transactions record the kind of each request, sent at once or held (`queue`). */
  function recordingSession(queue?: (() => void)[]) {
    const kinds: string[] = [];
    const requests: object[] = [];
    const session = {
      performMessageTransaction(request: object): Promise<void> {
        requests.push(request);
        const send = () => kinds.push(linkRequestKind(request));
        if (queue) queue.push(send);
        else send();
        return Promise.resolve();
      },
      async read(nodes: typeof threeValues): Promise<DataValue[]> {
        await Promise.resolve();
        await this.performMessageTransaction(new ReadRequest({ nodesToRead: nodes }));
        return [];
      },
    };
    markApplicationRequests(session as unknown as ClientSession);
    return { session, kinds, requests };
  }

  test("requests nobody's call sent are upkeep, whatever their type; a Publish is a publish", () => {
    const { session, kinds } = recordingSession();
    void session.performMessageTransaction(new ReadRequest({ nodesToRead: threeValues }));
    void session.performMessageTransaction(new WriteRequest({}));
    void session.performMessageTransaction(new RepublishRequest({ subscriptionId: 1, retransmitSequenceNumber: 7 }));
    void session.performMessageTransaction(new CreateSubscriptionRequest({}));
    void session.performMessageTransaction(new PublishRequest({}));
    expect(kinds).toEqual(["upkeep", "upkeep", "upkeep", "upkeep", "publish"]);
  });

  test("a request sent inside an application's call, also after an await, is the application's", async () => {
    const { session, kinds } = recordingSession();
    await asApplicationCall(async () => {
      await session.read(threeValues);
      await new Promise((resolve) => setTimeout(resolve, 1));
      void session.performMessageTransaction(new CreateMonitoredItemsRequest({}));
    });
    expect(kinds).toEqual(["application", "application"]);
  });

  test("a timer the call left behind sends upkeep once the call has settled; a queued request keeps its origin", async () => {
    const queue: (() => void)[] = [];
    const { session, kinds } = recordingSession(queue);
    let retry: Promise<unknown> | undefined;
    await asApplicationCall(async () => {
      await session.read(threeValues); // held: the channel is down
      retry = new Promise((resolve) => setTimeout(() => resolve(session.read(threeValues)), 5));
    });
    await retry;
    for (const send of queue) send();
    expect(kinds).toEqual(["application", "upkeep"]);
  });

  // fix13w (adv13v M3): the read of current values after a repair is upkeep with a purpose the link
  // watchdog can give the application's deadline after a stall was declared on it.
  test("a request sent inside an upkeep call is upkeep carrying its purpose, also inside an application's call; none after", async () => {
    const { session, kinds, requests } = recordingSession();
    await asApplicationCall(() => asUpkeepCall("current values", () => session.read(threeValues)));
    void session.performMessageTransaction(new ReadRequest({ nodesToRead: threeValues }));
    expect(kinds).toEqual(["upkeep", "upkeep"]);
    expect(requests.map((request) => upkeepPurpose(request))).toEqual(["current values", undefined]);
  });

  test("an application's call that throws ends its origin too", async () => {
    const { session, kinds } = recordingSession();
    let later: (() => void) | undefined;
    await expect(
      asApplicationCall(() => {
        later = () => void session.performMessageTransaction(new ReadRequest({ nodesToRead: threeValues }));
        return Promise.reject(new Error("refused"));
      }),
    ).rejects.toThrow("refused");
    later!();
    expect(kinds).toEqual(["upkeep"]);
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

// adv13s L1/L2: reconnect and rebuild attempts start at the link's own bound (a stalled link fails
// them soon) and double per failure up to connectMs (a link slower than measured still connects).
describe("connectStageMs", () => {
  test("2 keep-alives + 2 response times, doubled per failed attempt, at most connectMs", () => {
    expect(connectStageMs(1_000, 100, 15_000)).toBe(2_200);
    expect(connectStageMs(1_000, 100, 15_000, 1)).toBe(4_400);
    expect(connectStageMs(1_000, 100, 15_000, 2)).toBe(8_800);
    expect(connectStageMs(1_000, 100, 15_000, 3)).toBe(15_000);
    expect(connectStageMs(1_000, 100, 15_000, 1_000)).toBe(15_000);
    expect(connectStageMs(1_000, 100, 1_500)).toBe(1_500);
  });
});

// fix13x: on a slow link node-opcua's re-activation of a session takes many round trips (one
// Republish per missed notification); the repair watchdog counts their answers as progress, but
// not a keep-alive read's or a Publish's, which a stuck repair's open channel can still answer.
describe("isRepairResponse: which answers show node-opcua's repair progressing", () => {
  test("the repair's own services count", () => {
    expect(isRepairResponse(new ActivateSessionResponse())).toBe(true);
    expect(isRepairResponse(new RepublishResponse())).toBe(true);
  });

  test("keep-alive reads, Publish and anything else do not", () => {
    expect(isRepairResponse(new ReadResponse())).toBe(false);
    expect(isRepairResponse(new PublishResponse())).toBe(false);
    expect(isRepairResponse(undefined)).toBe(false);
    expect(isRepairResponse({ schema: { name: 42 } })).toBe(false);
  });
});

describe("the connect stage bound reaches node-opcua's transport only between attempts (adv13b HIGH-1)", () => {
  test("set while a handshake is under way (node-opcua asserts its timer is not armed): no throw, applied when the next attempt starts", async () => {
    // A server that accepts and never answers HEL: the transport's handshake timer stays armed.
    const sockets: Socket[] = [];
    const server = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const tracked = trackedTransports();
      const transport = tracked.factory.create({});
      tracked.stageMs = 600;
      const first = new Promise<Error | undefined>((resolve) =>
        transport.connect(`opc.tcp://127.0.0.1:${port}`, (error) => resolve(error ?? undefined)),
      );
      expect((transport as unknown as { timeout: number }).timeout).toBe(600);
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Mid-attempt: the old code assigned here, and node-opcua's assert ended the process.
      expect(() => {
        (transport as unknown as { timeout: number }).timeout = 1_200;
      }).toThrow();
      expect(() => applyStageMs(transport, 1_200)).not.toThrow();
      tracked.stageMs = 1_200;
      expect((transport as unknown as { timeout: number }).timeout).toBe(600);
      expect(await first).toBeInstanceOf(Error);
      const second = new Promise<Error | undefined>((resolve) =>
        transport.connect(`opc.tcp://127.0.0.1:${port}`, (error) => resolve(error ?? undefined)),
      );
      expect((transport as unknown as { timeout: number }).timeout).toBe(1_200);
      expect(await second).toBeInstanceOf(Error);
      transport.dispose();
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

// fix13z (adversarial review of fix13, LOW): the stage bound grew on every failed attempt, refusals included.
describe("trackedTransports: whether a failed attempt timed out at its bound", () => {
  test("a refused connection is no timeout; a HEL/ACK left unanswered is", async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    try {
      const tracked = trackedTransports();
      tracked.stageMs = 600;
      const connect = (port: number) => {
        const transport = tracked.factory.create({});
        return new Promise<Error | undefined>((resolve) =>
          transport.connect(`opc.tcp://127.0.0.1:${port}`, (error) => resolve(error ?? undefined)),
        ).finally(() => transport.dispose());
      };
      expect(await connect(closedPort)).toBeInstanceOf(Error);
      expect(tracked.lastFailureTimedOut).toBe(false);
      expect(await connect((silent.address() as { port: number }).port)).toBeInstanceOf(Error);
      expect(tracked.lastFailureTimedOut).toBe(true);
      expect(attemptTimedOut(50, 2_000)).toBe(false);
      expect(attemptTimedOut(1_000, 2_000)).toBe(true);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
