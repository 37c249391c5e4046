import { describe, expect, test } from "vitest";
import { endpointUrlHost } from "./url-host";

describe("endpointUrlHost", () => {
  test.each([
    ["::1", "[::1]"],
    ["fe80::1%eth0", "[fe80::1%25eth0]"],
    ["[::1]", "[::1]"],
    ["::ffff:10.0.0.5", "[::ffff:10.0.0.5]"],
    ["127.0.0.1", "127.0.0.1"],
    ["plant-pc", "plant-pc"],
    ["plant-pc.example.com", "plant-pc.example.com"],
  ])("%s → %s", (host, written) => {
    expect(endpointUrlHost(host)).toBe(written);
  });
});
