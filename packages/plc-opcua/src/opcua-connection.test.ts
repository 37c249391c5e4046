import type { ClientSession, TransferSubscriptionsResponse } from "node-opcua-client";
import { describe, expect, test } from "vitest";
import { refuseSubscriptionTransfers } from "./opcua-connection";

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
