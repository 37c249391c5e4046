import { createServer, connect as connectTcp, type AddressInfo, type Socket } from "node:net";
import { defineTags } from "@kiln/core";
import type { AuditEntry } from "@kiln/core/driver-kit";
import {
  AttributeIds,
  ClientSubscription,
  CreateMonitoredItemsRequest,
  CreateSubscriptionRequest,
  DataType,
  type DataValue,
  HistoryReadRequest,
  makeBrowsePath,
  MonitoringMode,
  PublishRequest,
  ReadAtTimeDetails,
  StatusCodes,
  type StatusCode,
  TimestampsToReturn,
} from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connect,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
  waitFor,
  revocableRead,
} from "./support/opcua-fixture";
import { type RawSession, rawSession } from "./support/opcua-raw";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar" },
  "secret.recipe": { dataType: "float64" },
});

let pki: TestPki;
let served: ServedTestSystem;
/** Tags whose `read` the test revoked (the `authorizer` option asks it, then the role table). */
const revoked = new Set<string>();

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    sources: {
      "chamber.pressure": { kind: "sine", amplitude: 4, offset: 5, periodMs: 1_000 },
      "secret.recipe": { kind: "sine", amplitude: 10, offset: 100, periodMs: 1_000 },
    },
    server: {
      authorizer: revocableRead(() => served.system, revoked),
      limits: {
        maxSessionsPerPrincipal: 2,
        maxMonitoredItemsPerCall: 6_000,
        maxMonitoredItemsPerSubscription: 6_000,
        maxMonitoredItemsPerSession: 6_000,
        maxHistoryReadTimes: 10,
        maxNodesPerCall: 20,
      },
    },
  });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

type Client = Awaited<ReturnType<typeof connect>>;

/** node-opcua's ClientSession type hides the raw service call its implementation has. */
async function createItems(
  client: Client,
  subscriptionId: number,
  count: number,
  item: { nodeId: string; attributeId: number },
): Promise<StatusCode[]> {
  const session = client.session as unknown as {
    createMonitoredItems(
      request: CreateMonitoredItemsRequest,
    ): Promise<{ results?: { statusCode: StatusCode }[] | null }>;
  };
  const response = await session.createMonitoredItems(
    new CreateMonitoredItemsRequest({
      subscriptionId,
      timestampsToReturn: TimestampsToReturn.Both,
      itemsToCreate: Array.from({ length: count }, (_, index) => ({
        itemToMonitor: item,
        monitoringMode: MonitoringMode.Reporting,
        requestedParameters: { clientHandle: index + 1, samplingInterval: 0, queueSize: 1, discardOldest: true },
      })),
    }),
  );
  return (response.results ?? []).map((result) => result.statusCode);
}

async function subscription(client: Client): Promise<ClientSubscription> {
  const created = ClientSubscription.create(client.session, {
    requestedPublishingInterval: 50,
    requestedLifetimeCount: 600,
    requestedMaxKeepAliveCount: 10,
    publishingEnabled: true,
  });
  await new Promise((resolve) => created.once("started", resolve));
  return created;
}

describe("OpcuaServer limits", () => {
  test("5001 monitored items on one node's DisplayName do not end the process; items past the session's limit are refused BadTooManyMonitoredItems; others are still served", async () => {
    const vic = await connect(served.server, pki.trusted, user("vic"));
    const olga = await connect(served.server, pki.trusted, user("olga"));
    try {
      const sub = await subscription(vic);
      const item = { nodeId: served.server.nodeIdOf("chamber.pressure"), attributeId: AttributeIds.DisplayName };
      const first = await createItems(vic, sub.subscriptionId, 5_001, item);
      expect(first.filter((code) => code === StatusCodes.Good)).toHaveLength(5_001);
      const more = await createItems(vic, sub.subscriptionId, 1_000, item);
      expect(more.filter((code) => code === StatusCodes.Good)).toHaveLength(999);
      expect(more.slice(999)).toEqual([StatusCodes.BadTooManyMonitoredItems]);
      expect(served.server.running).toBe(true);
      const [read] = await olga.session.read([
        { nodeId: served.server.nodeIdOf("chamber.pressure"), attributeId: AttributeIds.Value },
      ]);
      expect(read!.statusCode).toBe(StatusCodes.Good);
      await sub.terminate();
    } finally {
      await vic.close();
      await olga.close();
    }
  });

  test("sessions whose channel is gone (a crashed client) are closed to make room under maxSessionsPerPrincipal, not left holding server slots; a refusal is audited", async () => {
    // The crashed panel's connections go through a proxy the test cuts: the sockets close with no
    // CloseSession, as when the client process dies; node-opcua keeps the sessions until their timeout.
    const port = Number(new URL(served.server.endpointUrl.replace(/^opc\.tcp:/, "http:")).port);
    const sockets = new Set<Socket>();
    const proxy = createServer((client) => {
      const upstream = connectTcp({ host: "127.0.0.1", port });
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on("error", () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const proxied = {
      endpointUrl: `opc.tcp://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    } as unknown as Parameters<typeof connect>[0];
    const crashed = [
      await connect(proxied, pki.trusted, user("ada")),
      await connect(proxied, pki.trusted, user("ada")),
    ];
    const before = (await audited("opcua.ActivateSession")).length;
    const held: Client[] = [];
    try {
      for (const client of crashed) void client.client.disconnect().catch(() => undefined);
      for (const socket of sockets) socket.destroy();
      // Two new sessions for the same user are taken although the crashed two are still on the
      // server (retried until the server has seen their channels close).
      for (let index = 0; index < 2; index++) {
        const deadline = Date.now() + 5_000;
        for (;;) {
          try {
            held.push(await connect(served.server, pki.trusted, user("ada")));
            break;
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
      }
      // adv20b: the crashed sessions were closed to make room, not left holding server slots (one user
      // crashing sessions in rounds filled the server's maxSessions for everyone).
      const count = await held[0]!.session.read({ nodeId: "ns=0;i=2277", attributeId: AttributeIds.Value });
      expect(count.value.value).toBe(2);
      // Sibling: the limit still holds for live sessions, and that refusal is audited now.
      await expect(connect(served.server, pki.trusted, user("ada"))).rejects.toThrow(/BadTooManySessions/);
      let entries: AuditEntry[] = [];
      const until = Date.now() + 3_000;
      while (entries.length === 0 && Date.now() < until) {
        entries = (await audited("opcua.ActivateSession")).slice(before);
        if (entries.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(entries.map((entry) => entry.outcome)).toEqual(["denied"]);
      // Audited under the principal refused (it was authenticated: that is why the limit applies),
      // with the limit and the count; no sessions were gone this time, so none are said closed.
      expect(entries[0]).toMatchObject({ principal: "ada", roles: ["admin"] });
      expect(entries[0]!.reason).toMatch(
        /limits\.maxSessionsPerPrincipal: "ada" already holds 2 live sessions, the most limits\.maxSessionsPerPrincipal \(2\) allows/,
      );
      expect(entries[0]!.reason).not.toMatch(/closed/);
    } finally {
      for (const client of held) await client.close();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  test("a principal holds at most maxSessionsPerPrincipal sessions (BadTooManySessions beyond); another principal still connects", async () => {
    const held = [
      await connect(served.server, pki.trusted, user("vic")),
      await connect(served.server, pki.trusted, user("vic")),
    ];
    try {
      const before = (await audited("opcua.ActivateSession")).length;
      await expect(connect(served.server, pki.trusted, user("vic"))).rejects.toThrow(/BadTooManySessions/);
      let entries: AuditEntry[] = [];
      const until = Date.now() + 3_000;
      while (entries.length === 0 && Date.now() < until) {
        entries = (await audited("opcua.ActivateSession")).slice(before);
        if (entries.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ principal: "vic", roles: ["viewer"], outcome: "denied" });
      expect(entries[0]!.principal).not.toBe("unauthenticated");
      expect(entries[0]!.reason).toMatch(
        /"vic" already holds 2 live sessions, the most limits\.maxSessionsPerPrincipal \(2\) allows/,
      );
      expect(entries[0]!.reason).not.toMatch(/closed/);
      const olga = await connect(served.server, pki.trusted, user("olga"));
      await olga.close();
    } finally {
      for (const client of held) await client.close();
    }
  });

  test("sibling: a domain user's id (a backslash) is written out once in the refusal's reason, as in every other refusal (adv20e F3)", async () => {
    const held = [
      await connect(served.server, pki.trusted, user("PLANT\\val")),
      await connect(served.server, pki.trusted, user("PLANT\\val")),
    ];
    try {
      const before = (await audited("opcua.ActivateSession")).length;
      await expect(connect(served.server, pki.trusted, user("PLANT\\val"))).rejects.toThrow(/BadTooManySessions/);
      let entries: AuditEntry[] = [];
      const until = Date.now() + 3_000;
      while (entries.length === 0 && Date.now() < until) {
        entries = (await audited("opcua.ActivateSession")).slice(before);
        if (entries.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(entries).toHaveLength(1);
      expect(entries[0]!.reason).toContain('"PLANT\\u{005C}val" already holds 2 live sessions');
      expect(entries[0]!.reason).not.toContain("\\u{005C}\\u{005C}");
    } finally {
      for (const client of held) await client.close();
    }
    // Closed sessions free their places.
    const again = await connect(served.server, pki.trusted, user("vic"));
    await again.close();
  });

  test("sibling: a principal id with control characters refused at the limit: the reason names the limit and the count, the id written out once (adv20e F4)", async () => {
    const held = [
      await connect(served.server, pki.trusted, user("ctl")),
      await connect(served.server, pki.trusted, user("ctl")),
    ];
    try {
      const before = (await audited("opcua.ActivateSession")).length;
      await expect(connect(served.server, pki.trusted, user("ctl"))).rejects.toThrow(/BadTooManySessions/);
      let entries: AuditEntry[] = [];
      const until = Date.now() + 3_000;
      while (entries.length === 0 && Date.now() < until) {
        entries = (await audited("opcua.ActivateSession")).slice(before);
        if (entries.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(entries).toHaveLength(1);
      const reason = entries[0]!.reason ?? "";
      expect(reason).toContain("already holds 2 live sessions, the most limits.maxSessionsPerPrincipal (2) allows");
      expect(reason).toContain('"ctl\\u{0000}\\u{0007}\\u{000A}ctl');
      expect(reason).not.toContain("\\u{005C}");
      expect([...reason].some((character) => character.charCodeAt(0) < 0x20)).toBe(false);
      expect(entries[0]!.principal).toMatch(/^ctl\uFFFD\uFFFD\uFFFDctl/);
    } finally {
      for (const client of held) await client.close();
    }
  });

  test("a principal without `read` on the machine refused at maxSessionsPerPrincipal: audited under itself, KILN_FORBIDDEN, the limit and count still in the entry", async () => {
    const held = [
      await connect(served.server, pki.trusted, user("rita")),
      await connect(served.server, pki.trusted, user("rita")),
    ];
    try {
      const before = (await audited("opcua.ActivateSession")).length;
      await expect(connect(served.server, pki.trusted, user("rita"))).rejects.toThrow(/BadTooManySessions/);
      let entries: AuditEntry[] = [];
      const until = Date.now() + 3_000;
      while (entries.length === 0 && Date.now() < until) {
        entries = (await audited("opcua.ActivateSession")).slice(before);
        if (entries.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ principal: "rita", outcome: "denied" });
      expect(entries[0]!.reason).toMatch(/^KILN_FORBIDDEN: /);
      expect(entries[0]!.reason).toContain("session limit: 2 live sessions held, limits.maxSessionsPerPrincipal 2");
    } finally {
      for (const client of held) await client.close();
    }
  });

  // adv20 F2: a panel that crashed left its sessions on the server (node-opcua keeps them until
  // their timeout, up to 50 min); counted against the limit, they locked its user out, and the
  // refusal was only logged.
  test("a HistoryRead AtTime of more than maxHistoryReadTimes ReqTimes x nodes is refused BadTooManyOperations", async () => {
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      const read = (times: number) =>
        vic.session.historyRead(
          new HistoryReadRequest({
            historyReadDetails: new ReadAtTimeDetails({
              reqTimes: Array.from({ length: times }, (_, index) => new Date(Date.now() - index * 1_000)),
              useSimpleBounds: false,
            }),
            nodesToRead: ["chamber.pressure", "secret.recipe"].map((tag) => ({ nodeId: served.server.nodeIdOf(tag) })),
            timestampsToReturn: TimestampsToReturn.Source,
            releaseContinuationPoints: false,
          }),
        );
      const before = await audited("opcua.HistoryRead");
      await expect(read(6)).rejects.toThrow(/BadTooManyOperations/);
      const after = await audited("opcua.HistoryRead");
      expect(after.slice(before.length)).toMatchObject([{ principal: "vic", target: "reactor-1" }]);
      const allowed = await read(5);
      expect(allowed.results).toHaveLength(2);
    } finally {
      await vic.close();
    }
  });
});

/** The audit entries of an action so far. */
async function audited(action: string): Promise<AuditEntry[]> {
  return (await served.store.audit.query({ from: 0, to: Date.now() + 1 })).filter((entry) => entry.action === action);
}

describe("OpcuaServer bounds the operations of one call and audits a request refused for its size once", () => {
  /** Runs `call`, which must be refused `code`; answers the one audit entry it left under `action`. */
  async function refusedOnce(action: string, code: RegExp, call: () => Promise<unknown>): Promise<AuditEntry> {
    const before = (await audited(action)).length;
    await expect(call()).rejects.toThrow(code);
    const entries = (await audited(action)).slice(before);
    expect(entries).toHaveLength(1);
    return entries[0]!;
  }

  test("Read, Write, Browse, TranslateBrowsePaths and Call of more than maxNodesPerCall (20) operations: BadTooManyOperations, one audit entry each with the count", async () => {
    const olga = await connect(served.server, pki.trusted, user("olga"));
    try {
      const nodeId = served.server.nodeIdOf("chamber.pressure");
      const session = olga.session as unknown as {
        read(nodes: unknown[]): Promise<unknown>;
        write(nodes: unknown[]): Promise<unknown>;
        browse(nodes: unknown[]): Promise<unknown>;
        translateBrowsePath(paths: unknown[]): Promise<unknown>;
        call(methods: unknown[]): Promise<unknown>;
      };
      const many = <T>(count: number, make: () => T): T[] => Array.from({ length: count }, make);
      const read = await refusedOnce("opcua.Read", /BadTooManyOperations/, () =>
        session.read(many(21, () => ({ nodeId, attributeId: AttributeIds.Value }))),
      );
      expect(read).toMatchObject({ principal: "olga", target: "reactor-1", outcome: "denied" });
      expect(read.reason).toContain("21 operations");
      const write = await refusedOnce("opcua.Write", /BadTooManyOperations/, () =>
        session.write(
          many(21, () => ({
            nodeId,
            attributeId: AttributeIds.Value,
            value: { value: { dataType: DataType.Double, value: 1 } },
          })),
        ),
      );
      // Authorized first (ADR 0036): olga may write no tag by default, so the entry says forbidden.
      expect(write).toMatchObject({ principal: "olga", outcome: "denied" });
      await refusedOnce("opcua.Browse", /BadTooManyOperations/, () =>
        session.browse(many(21, () => ({ nodeId, browseDirection: 0, resultMask: 63 }))),
      );
      await refusedOnce("opcua.TranslateBrowsePathsToNodeIds", /BadTooManyOperations/, () =>
        session.translateBrowsePath(many(21, () => makeBrowsePath("RootFolder", "/Objects"))),
      );
      await refusedOnce("opcua.Call", /BadTooManyOperations/, () =>
        session.call(many(21, () => ({ objectId: "ns=0;i=2253", methodId: "ns=0;i=11492", inputArguments: [] }))),
      );
      // At the bound, the same Read is served.
      expect(await session.read(many(20, () => ({ nodeId, attributeId: AttributeIds.Value })))).toHaveLength(20);
    } finally {
      await olga.close();
    }
  });

  test("a CreateMonitoredItems of more than maxMonitoredItemsPerCall items is refused once, audited once with the count; a viewer's oversized Write is refused the same, audited denied (forbidden)", async () => {
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      const sub = await subscription(vic);
      const entry = await refusedOnce("opcua.CreateMonitoredItems", /BadTooManyOperations/, () =>
        createItems(vic, sub.subscriptionId, 6_001, { nodeId: "ns=0;i=2253", attributeId: AttributeIds.DisplayName }),
      );
      expect(entry.reason).toContain("6001 operations");
      const nodeId = served.server.nodeIdOf("chamber.pressure");
      // Refused for its size whoever sends it; vic, who may write nothing, is recorded denied (forbidden).
      const denied = await refusedOnce("opcua.Write", /BadTooManyOperations/, () =>
        vic.session.write(
          Array.from({ length: 21 }, () => ({
            nodeId,
            attributeId: AttributeIds.Value,
            value: { value: { dataType: DataType.Double, value: 1 } },
          })),
        ),
      );
      expect(denied).toMatchObject({ principal: "vic", outcome: "denied" });
      expect(denied.reason).toMatch(/forbidden|not allowed|may not|permission/i);
      await sub.terminate();
    } finally {
      await vic.close();
    }
  });
});

describe("OpcuaServer checks `read` on every value of a monitored item (sampling interval 0, pushed on change)", () => {
  async function watch(client: Client, tag: string): Promise<{ seen: DataValue[]; stop(): Promise<void> }> {
    const sub = await subscription(client);
    const item = await sub.monitor(
      { nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value },
      { samplingInterval: 0, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    const seen: DataValue[] = [];
    item.on("changed", (value: DataValue) => void seen.push(value));
    await waitFor(() => seen.some((value) => value.statusCode === StatusCodes.Good), "a good value");
    return { seen, stop: () => sub.terminate() };
  }

  test("after the session changes user (ActivateSession) to a principal without `read`, the item delivers BadUserAccessDenied, no value", async () => {
    const client = await connect(served.server, pki.trusted, user("vic"));
    try {
      // rita (role chamber-reader, not in the default table) may read nothing.
      const watched = await watch(client, "secret.recipe");
      expect(await client.session.changeUser(user("rita"))).toBe(StatusCodes.Good);
      await waitFor(() => watched.seen.at(-1)?.statusCode === StatusCodes.BadUserAccessDenied, "a refused value");
      const from = watched.seen.length;
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(watched.seen.slice(from).filter((value) => value.statusCode === StatusCodes.Good)).toEqual([]);
      expect(watched.seen.at(-1)?.value.value).toBeNull();
      await watched.stop();
    } finally {
      await client.close();
    }
  });

  test("after `read` is revoked, the item delivers BadUserAccessDenied, no value", async () => {
    const client = await connect(served.server, pki.trusted, user("vic"));
    try {
      const watched = await watch(client, "secret.recipe");
      revoked.add("secret.recipe");
      await waitFor(() => watched.seen.at(-1)?.statusCode === StatusCodes.BadUserAccessDenied, "a refused value");
      const from = watched.seen.length;
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(watched.seen.slice(from).filter((value) => value.statusCode === StatusCodes.Good)).toEqual([]);
      await watched.stop();
    } finally {
      revoked.delete("secret.recipe");
      await client.close();
    }
  });
});

const raw = (client: Client): RawSession => rawSession(client.session);

async function rawSubscription(client: Client, publishingInterval: number): Promise<number> {
  const created = await raw(client).createSubscription(
    new CreateSubscriptionRequest({
      requestedPublishingInterval: publishingInterval,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    }),
  );
  return created.subscriptionId;
}

async function rawItem(
  client: Client,
  subscriptionId: number,
  tag: string,
  clientHandle: number,
  queueSize = 1,
): Promise<StatusCode | undefined> {
  const response = await raw(client).createMonitoredItems(
    new CreateMonitoredItemsRequest({
      subscriptionId,
      timestampsToReturn: TimestampsToReturn.Both,
      itemsToCreate: [
        {
          itemToMonitor: { nodeId: served.server.nodeIdOf(tag), attributeId: AttributeIds.Value },
          monitoringMode: MonitoringMode.Reporting,
          requestedParameters: { clientHandle, samplingInterval: 0, queueSize, discardOldest: true },
        },
      ],
    }),
  );
  return response.results?.[0]?.statusCode;
}

/** The values of `publishes` Publish responses on the session. */
async function published(client: Client, publishes: number): Promise<DataValue[]> {
  const values: DataValue[] = [];
  for (let index = 0; index < publishes; index++) {
    const response = await raw(client).publish(new PublishRequest({ subscriptionAcknowledgements: [] }));
    for (const data of response.notificationMessage.notificationData ?? []) {
      for (const item of data?.monitoredItems ?? []) values.push(item.value);
    }
  }
  return values;
}

const good = (values: DataValue[]) => values.filter((value) => value.statusCode.isGood());

describe("OpcuaServer judges a subscription's items by the subscription's current session", () => {
  test("after TransferSubscriptions to another session that then changes user to a principal without `read`, the items deliver no value and a new item is refused BadUserAccessDenied", async () => {
    const a = await connect(served.server, pki.trusted, user("olga"));
    const b = await connect(served.server, pki.trusted, user("olga"));
    try {
      const subscriptionId = await rawSubscription(a, 100);
      expect(await rawItem(a, subscriptionId, "secret.recipe", 7)).toBe(StatusCodes.Good);
      expect(good(await published(a, 2)).length).toBeGreaterThan(0);
      const transferred = await raw(b).transferSubscriptions({
        subscriptionIds: [subscriptionId],
        sendInitialValues: true,
      });
      expect(transferred.results?.[0]?.statusCode).toBe(StatusCodes.Good);
      expect(good(await published(b, 2)).length).toBeGreaterThan(0);
      expect(await b.session.changeUser(user("rita"))).toBe(StatusCodes.Good);
      const after = await published(b, 4);
      expect(good(after)).toEqual([]);
      expect(after.some((value) => value.statusCode === StatusCodes.BadUserAccessDenied)).toBe(true);
      expect(await rawItem(b, subscriptionId, "secret.recipe", 8)).toBe(StatusCodes.BadUserAccessDenied);
      await a.close();
      expect(good(await published(b, 3))).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("values queued before `read` is revoked are not sent after it: the next Publish carries one BadUserAccessDenied, no value", async () => {
    const client = await connect(served.server, pki.trusted, user("olga"));
    try {
      const subscriptionId = await rawSubscription(client, 1_500);
      expect(await rawItem(client, subscriptionId, "secret.recipe", 9, 100)).toBe(StatusCodes.Good);
      await published(client, 1); // the initial value
      await new Promise((resolve) => setTimeout(resolve, 600)); // values queue (scan 50 ms)
      revoked.add("secret.recipe");
      const after = await published(client, 1);
      expect(good(after)).toEqual([]);
      expect(after.map((value) => value.statusCode)).toEqual([StatusCodes.BadUserAccessDenied]);
      expect(after[0]!.value.value).toBeNull();
    } finally {
      revoked.delete("secret.recipe");
      await client.close();
    }
  });
});

describe("OpcuaServer leaves no orphaned subscription and bounds queues", () => {
  test("a session closed without deleting its subscriptions takes them with it: no other session can transfer them (none is left as an orphan)", async () => {
    const vic = await connect(served.server, pki.trusted, user("vic"));
    const ids: number[] = [];
    for (let index = 0; index < 3; index++) ids.push(await rawSubscription(vic, 100));
    await vic.session.close(false); // DeleteSubscriptions false
    await vic.client.disconnect();
    const again = await connect(served.server, pki.trusted, user("vic"));
    try {
      const transferred = await raw(again).transferSubscriptions({ subscriptionIds: ids, sendInitialValues: false });
      expect(transferred.results?.map((result) => result.statusCode)).toEqual(
        ids.map(() => StatusCodes.BadSubscriptionIdInvalid),
      );
    } finally {
      await again.close();
    }
  });

  test("a monitored item's QueueSize, for values and for events, is revised to at most limits.maxQueueSize (100), on create and on modify", async () => {
    const vic = await connect(served.server, pki.trusted, user("vic"));
    try {
      const sub = await subscription(vic);
      const value = await sub.monitor(
        { nodeId: served.server.nodeIdOf("chamber.pressure"), attributeId: AttributeIds.Value },
        { samplingInterval: 0, queueSize: 4_000, discardOldest: true },
        TimestampsToReturn.Both,
      );
      const event = await sub.monitor(
        { nodeId: "ns=0;i=2253", attributeId: AttributeIds.EventNotifier },
        { samplingInterval: 0, queueSize: 10_000, discardOldest: true, filter: null },
        TimestampsToReturn.Both,
      );
      const revised = (item: typeof value) => (item as unknown as { result: { revisedQueueSize: number } }).result;
      expect(revised(value).revisedQueueSize).toBe(100);
      expect(revised(event).revisedQueueSize).toBe(100);
      const modified = await value.modify({ samplingInterval: 0, queueSize: 3_000, discardOldest: true });
      expect((modified as unknown as { revisedQueueSize: number }).revisedQueueSize).toBe(100);
      await sub.terminate();
    } finally {
      await vic.close();
    }
  });
});
