import { isIPv6 } from "node:net";

/** An `opc.tcp://` endpoint URL taken apart ({@link parseEndpointUrl}). */
export interface OpcTcpEndpoint {
  /** The URL's host as written: a name, an IPv4 address or a bracketed IPv6 literal (`[::1]`, `[fe80::1%25eth0]`). */
  readonly host: string;
  /**
   * The host to open the TCP socket to: an IPv6 literal without brackets and with its zone as the
   * operating system names it (`fe80::1%eth0`); otherwise {@link host}.
   */
  readonly socketHost: string;
  /** Whether the host is an IPv6 literal. */
  readonly ipv6: boolean;
  /** TCP port, 1..65535; 4840 (the OPC UA default, Part 6 §7.2) when the URL names none. */
  readonly port: number;
  /**
   * The URL node-opcua is given: the URL itself, but with an IPv6 zone left out (node-opcua parses it
   * with WHATWG URL, which refuses zones; the zone only selects the interface of the socket).
   */
  readonly clientUrl: string;
}

/** One refused endpoint URL: the rule it breaks, as the validation message says it. */
export interface EndpointUrlRefusal {
  readonly rule: string;
}

const EXAMPLE = "e.g. opc.tcp://10.0.0.5:4840 or opc.tcp://[fd00::5]:4840";
/** RFC 6874 ZoneID (percent-encoded as `%25` in the URL): unreserved characters or %-escapes. */
const ZONE = /^(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})+$/;
/**
 * A zone as the operating system names an interface once decoded: a Linux interface name (at most 15
 * characters, IFNAMSIZ) or a Windows interface index; 64 leaves room for both. A `%00`, `%0A` or `%2F`
 * would otherwise reach the socket's address (adv13za LOW).
 */
const INTERFACE_NAME = /^[A-Za-z0-9._~-]{1,64}$/;
/** Longest endpoint URL taken: far above any real one, small enough to print in an error or a log line. */
export const MAX_ENDPOINT_URL_LENGTH = 4096;
/** Longest host name (RFC 1035 §2.3.4: 255 octets on the wire, 253 characters written). */
const MAX_HOST_NAME_LENGTH = 253;

/**
 * Takes an `opc.tcp://host[:port][/path]` endpoint URL apart: the one rule for endpoint URLs in
 * plc-opcua (the options schema, the driver's name, the socket). Host: a name or IPv4 address, or
 * an IPv6 literal in brackets (RFC 3986 §3.2.2) with an optional zone (RFC 6874, `%25` + zone);
 * port 1..65535; the rest must parse as WHATWG URL parses it (node-opcua parses it so). Refused besides:
 * more than {@link MAX_ENDPOINT_URL_LENGTH} characters, control characters anywhere, user information
 * (`user@host`: credentials belong in `identity`, never in a URL that is logged), a host name longer than
 * 253 characters (RFC 1035), a zone that does not decode to an interface name.
 *
 * @returns the parts, or the rule the URL breaks (the driver reports it as `KILN_VALIDATION` at
 *   `endpointUrl`).
 */
export function parseEndpointUrl(url: string): OpcTcpEndpoint | EndpointUrlRefusal {
  if (url.length > MAX_ENDPOINT_URL_LENGTH)
    return { rule: `must be at most ${MAX_ENDPOINT_URL_LENGTH} characters (it has ${url.length})` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(url)) return { rule: "must not contain control characters (NUL, newline, tab...)" };
  if (/^opc\.tcp:\/\/[^/]*@/i.test(url))
    return {
      rule: "must not carry user information (user@host): give the user name and password in identity, never in the URL",
    };
  const match = /^opc\.tcp:\/\/(\[[^\]/\s]*\]|[^/:[\]\s]+)(?::(\d*))?(\/.*)?$/i.exec(url);
  if (match === null) {
    if (/^opc\.tcp:\/\/[^/[\]\s]*:[^/[\]\s]*:/i.test(url))
      return { rule: `an IPv6 address must be written in brackets, ${EXAMPLE}` };
    if (/^opc\.tcp:\/\/\[[^\]]*$/i.test(url))
      return { rule: `an IPv6 address in brackets must end with "]", ${EXAMPLE}` };
    return { rule: `must be an opc.tcp:// URL, ${EXAMPLE}` };
  }
  const [, host = "", portText, path = ""] = match;
  if (portText !== undefined && !/^\d+$/.test(portText)) return { rule: `must be an opc.tcp:// URL, ${EXAMPLE}` };
  if (!host.startsWith("[") && host.length > MAX_HOST_NAME_LENGTH)
    return { rule: `its host name must be at most ${MAX_HOST_NAME_LENGTH} characters (RFC 1035)` };
  const port = portText === undefined ? 4840 : Number(portText);
  if (!(port >= 1 && port <= 65535)) return { rule: "its port must be a whole number from 1 to 65535" };
  let socketHost = host;
  let clientHost = host;
  const ipv6 = host.startsWith("[");
  if (ipv6) {
    const literal = host.slice(1, -1);
    const zoneAt = literal.indexOf("%25");
    const address = zoneAt === -1 ? literal : literal.slice(0, zoneAt);
    const zone = zoneAt === -1 ? undefined : literal.slice(zoneAt + 3);
    if (!isIPv6(address) || address.includes("%") || (zone !== undefined && !ZONE.test(zone)))
      return {
        rule: `the host in brackets must be an IPv6 address, with an optional zone written %25 (RFC 6874), ${EXAMPLE}`,
      };
    let decodedZone: string | undefined;
    try {
      decodedZone = zone === undefined ? undefined : decodeURIComponent(zone);
    } catch {
      // %-escapes that are no UTF-8 (`%25%C3`): not an interface name (adv13y LOW-1: a raw URIError).
      return { rule: `the IPv6 zone after %25 must be an interface name (RFC 6874), ${EXAMPLE}` };
    }
    if (decodedZone !== undefined && !INTERFACE_NAME.test(decodedZone))
      return { rule: `the IPv6 zone after %25 must be an interface name (RFC 6874), ${EXAMPLE}` };
    socketHost = decodedZone === undefined ? address : `${address}%${decodedZone}`;
    clientHost = `[${address}]`;
  }
  const clientUrl = `opc.tcp://${clientHost}${portText === undefined ? "" : `:${portText}`}${path}`;
  try {
    new URL(clientUrl.replace(/^opc\.tcp:/i, "http:"));
  } catch {
    return { rule: `must be a valid URL (host name characters), ${EXAMPLE}` };
  }
  return { host, socketHost, ipv6, port, clientUrl };
}

/** Whether {@link parseEndpointUrl} refused the URL. */
export function isEndpointUrlRefusal(parsed: OpcTcpEndpoint | EndpointUrlRefusal): parsed is EndpointUrlRefusal {
  return "rule" in parsed;
}
