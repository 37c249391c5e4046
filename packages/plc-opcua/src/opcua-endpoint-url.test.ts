import { describe, expect, test } from "vitest";
import { isEndpointUrlRefusal, parseEndpointUrl } from "./opcua-endpoint-url";
import { opcuaDriverOptionsSchema } from "./opcua-driver-options";
import { OpcuaDriver } from "./opcua-driver";

// adv13 LOW (issue 13): an IPv6 literal endpoint (opc.tcp://[::1]:4840) was refused by the options
// regex, and node-opcua's transport could not dial one either (docs/adr/0022, amendment fix13ag).
describe("parseEndpointUrl", () => {
  test.each([
    [
      "opc.tcp://[::1]:4840",
      { host: "[::1]", socketHost: "::1", ipv6: true, port: 4840, clientUrl: "opc.tcp://[::1]:4840" },
    ],
    ["opc.tcp://[::1]:4840/UA/Server", { socketHost: "::1", port: 4840, clientUrl: "opc.tcp://[::1]:4840/UA/Server" }],
    ["opc.tcp://[fd00::5]", { socketHost: "fd00::5", port: 4840 }],
    ["opc.tcp://[::ffff:10.0.0.5]:48010", { socketHost: "::ffff:10.0.0.5", port: 48010 }],
    [
      "opc.tcp://[fe80::1%25eth0]:4840",
      { host: "[fe80::1%25eth0]", socketHost: "fe80::1%eth0", ipv6: true, clientUrl: "opc.tcp://[fe80::1]:4840" },
    ],
    ["opc.tcp://plc:4840", { host: "plc", socketHost: "plc", ipv6: false, port: 4840 }],
    ["opc.tcp://[fe80::1%2512]:4840", { socketHost: "fe80::1%12" }],
    [`opc.tcp://${"a".repeat(253)}:4840`, { port: 4840 }],
    [
      "opc.tcp://10.0.0.5:4840/path",
      { socketHost: "10.0.0.5", ipv6: false, clientUrl: "opc.tcp://10.0.0.5:4840/path" },
    ],
  ])("accepts %s", (url, parts) => {
    expect(parseEndpointUrl(url)).toMatchObject(parts);
  });

  test.each([
    ["opc.tcp://::1:4840", /IPv6 address must be written in brackets/],
    ["opc.tcp://[::1", /must end with "\]"/],
    ["opc.tcp://[::1]]:4840", /opc\.tcp:\/\/ URL/],
    ["opc.tcp://[not-an-address]:4840", /must be an IPv6 address/],
    ["opc.tcp://[1.2.3.4]:4840", /must be an IPv6 address/],
    ["opc.tcp://[fe80::1%eth0]:4840", /zone written %25/],
    ["opc.tcp://[fe80::1%25]:4840", /zone written %25/],
    ["opc.tcp://[::1]:0", /port must be a whole number from 1 to 65535/],
    ["opc.tcp://[::1]:65536", /port must be a whole number from 1 to 65535/],
    ["opc.tcp://[::1]:", /opc\.tcp:\/\/ URL/],
    ["opc.tcp://[::1]x:4840", /opc\.tcp:\/\/ URL/],
    ["http://[::1]:4840", /opc\.tcp:\/\/ URL/],
    ["opc.tcp://pl%zzc:4840", /valid URL/],
    // adv13y LOW-1: a zone whose %-escapes are no UTF-8 threw a raw URIError from the constructor.
    ["opc.tcp://[fe80::1%25%C3]:4840", /zone after %25 must be an interface name/],
    ["opc.tcp://[fe80::1%25eth%E2%82]:4840", /zone after %25 must be an interface name/],
    // adv13za LOW: zones that decode to NUL, a newline or a slash reached the socket address; a zone of
    // thousands of characters, user information and control characters elsewhere were taken too.
    ["opc.tcp://[fe80::1%25eth%000]:4840", /zone after %25 must be an interface name/],
    ["opc.tcp://[fe80::1%25eth0%0A]:4840", /zone after %25 must be an interface name/],
    ["opc.tcp://[fe80::1%25eth%2F0]:4840", /zone after %25 must be an interface name/],
    ["opc.tcp://[fe80::1%25é]:4840", /zone written %25/],
    [`opc.tcp://[fe80::1%25${"e".repeat(65)}]:4840`, /zone after %25 must be an interface name/],
    [`opc.tcp://[fe80::1%25${"e".repeat(5000)}]:4840`, /at most 4096 characters/],
    ["opc.tcp://operator:secret@plc:4840", /user information/],
    ["opc.tcp://operator@plc:4840", /user information/],
    ["opc.tcp://plc:4840/UA\u0000Server", /control characters/],
    ["opc.tcp://plc:4840/UA\tServer", /control characters/],
    [`opc.tcp://${"a".repeat(254)}:4840`, /host name must be at most 253 characters/],
  ])("refuses %s naming the rule", (url, rule) => {
    const parsed = parseEndpointUrl(url);
    expect(isEndpointUrlRefusal(parsed)).toBe(true);
    expect((parsed as { rule: string }).rule).toMatch(rule);
  });

  test("the options schema takes IPv6 literals and refuses malformed ones at endpointUrl with the rule", () => {
    expect(opcuaDriverOptionsSchema.parse({ endpointUrl: "opc.tcp://[::1]:4840" }).endpointUrl).toBe(
      "opc.tcp://[::1]:4840",
    );
    expect(opcuaDriverOptionsSchema.parse({ endpointUrl: "opc.tcp://[fe80::1%25eth0]:4840" }).endpointUrl).toBe(
      "opc.tcp://[fe80::1%25eth0]:4840",
    );
    for (const endpointUrl of ["opc.tcp://::1:4840", "opc.tcp://[::1", "opc.tcp://[fe80::1%25%C3]:4840"]) {
      let error: unknown;
      try {
        new OpcuaDriver({ endpointUrl });
      } catch (caught) {
        error = caught;
      }
      expect(error).toMatchObject({ code: "KILN_VALIDATION", details: { issues: [{ path: "endpointUrl" }] } });
      const issues = (error as { details: { issues: { message: string }[] } }).details.issues;
      expect(issues).toHaveLength(1);
      expect(issues[0]!.message).toMatch(/IPv6/);
    }
  });

  test("the driver is named by the URL's host and port, brackets included", () => {
    expect(new OpcuaDriver({ endpointUrl: "opc.tcp://[::1]:4840" }).name).toBe("opcua:[::1]:4840");
    expect(new OpcuaDriver({ endpointUrl: "opc.tcp://[fe80::1%25eth0]:4840" }).name).toBe("opcua:[fe80::1]:4840");
  });
});
