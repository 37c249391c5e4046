import { isIPv6 } from "node:net";

/**
 * The host part of a URL (`opc.tcp://`, `mqtt://`, …) for a host name or address: an IPv6 address
 * in brackets (RFC 3986 §3.2.2), its zone written `%25` (RFC 6874); anything else as it is. A server
 * listening on `::1` is reached at `opc.tcp://[::1]:4840`, never `opc.tcp://::1:4840`.
 *
 * @param host - a host name, an IPv4 address, an IPv6 address (with an optional `%zone`), or a host
 *   already in brackets (returned unchanged).
 * @returns the host as a URL writes it.
 */
export function endpointUrlHost(host: string): string {
  if (host.startsWith("[") || !isIPv6(host)) return host;
  const zoneAt = host.indexOf("%");
  return zoneAt === -1 ? `[${host}]` : `[${host.slice(0, zoneAt)}%25${host.slice(zoneAt + 1)}]`;
}
