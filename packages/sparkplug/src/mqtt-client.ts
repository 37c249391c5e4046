import type { IClientOptions, MqttClient } from "mqtt";
import { KilnError, KilnValidationError, type Clock } from "@kiln/core";
import type { ReconnectBackoff } from "@kiln/core/driver-kit";

type Connect = (url: string, options: IClientOptions) => MqttClient;
let loading: Promise<Connect> | undefined;

/**
 * @internal MQTT.js's `connect`, loaded on first use rather than at import: MQTT.js loads
 * worker-timers, whose regenerator runtime defines `globalThis.regeneratorRuntime`, and importing
 * a Kiln package must change no global ("sideEffects": false). So the global appears only once a
 * node or a test client connects.
 */
export function mqttConnect(): Promise<Connect> {
  loading ??= import("mqtt").then((module) => {
    const named = (module as { connect?: Connect }).connect;
    return named ?? (module.default as unknown as { connect: Connect }).connect;
  });
  return loading;
}

/**
 * @internal How long each step of an MQTT goodbye (a last publish, the DISCONNECT) may take, in
 * ms: MQTT.js holds a QoS 1 publish, and a graceful `end()`, until the broker answers — on a link
 * that died unnoticed or a broker that stopped answering, until the keepalive gives up (90 s at
 * the default 60 s keepalive).
 */
export const GOODBYE_TIMEOUT_MS = 2_000;

/**
 * @internal Resolves `true` when `work` fulfils within {@link GOODBYE_TIMEOUT_MS} on `clock`,
 * `false` when it fails or takes longer (it is then left to settle on its own).
 */
export async function boundedGoodbye(work: Promise<unknown>, clock: Clock): Promise<boolean> {
  const timer = new AbortController();
  const settled = await Promise.race([
    work.then(
      () => true,
      () => false,
    ),
    clock.sleep(GOODBYE_TIMEOUT_MS, timer.signal).then(
      () => false,
      () => false,
    ),
  ]);
  timer.abort();
  return settled;
}

/**
 * @internal Ends an MQTT session: a graceful DISCONNECT (bounded by {@link GOODBYE_TIMEOUT_MS})
 * when `graceful`, else — or when that does not finish in time — the socket is closed at once
 * (the broker then publishes the Will).
 */
export async function endSession(client: MqttClient, clock: Clock, graceful: boolean): Promise<void> {
  if (graceful && (await boundedGoodbye(client.endAsync(), clock))) return;
  await client.endAsync(true).catch(() => undefined);
}

/** SUBACK failure reason codes (MQTT 5.0 3.9.3; 3.1.1 has only 0x80) by number. */
const SUBACK_REASONS: Readonly<Record<number, string>> = {
  0x80: "Unspecified error",
  0x83: "Implementation specific error",
  0x87: "Not authorized",
  0x8f: "Topic Filter invalid",
  0x91: "Packet Identifier in use",
  0x97: "Quota exceeded",
  0x9e: "Shared Subscriptions not supported",
  0xa1: "Subscription Identifiers not supported",
  0xa2: "Wildcard Subscriptions not supported",
};

/** A SUBACK reason code as shown: `0x87 Not authorized`. */
function subackReason(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")}${SUBACK_REASONS[code] === undefined ? "" : ` ${SUBACK_REASONS[code]}`}`;
}

/**
 * @internal Subscribes `filters` (topic filter → options, in the order sent) and checks the
 * broker's SUBACK for each of them (adversarial review adv19p M1): a broker's ACL may refuse one
 * filter and grant the others, and a session that misses one of them cannot be trusted with what
 * it feeds (a refused NDEATH filter: dead edge nodes shown online). Resolves with the filters the
 * broker granted at a lower QoS than asked (`"<filter> (QoS 0, asked 1)"`), empty when none.
 * @throws KilnError `KILN_CONNECTION_FAILED` (retryable: the broker's ACL may be fixed while the
 *   caller retries on its backoff) naming `what`, each refused filter and its reason code
 *   (`0x80` in MQTT 3.1.1, `0x80` and up in MQTT 5, e.g. `0x87 Not authorized`), in
 *   `details.refused` too; what MQTT.js throws otherwise (the connection closed meanwhile).
 */
export async function subscribeChecked(
  client: MqttClient,
  filters: Readonly<Record<string, { readonly qos: 0 | 1 }>>,
  what: string,
): Promise<string[]> {
  const asked = Object.entries(filters);
  let granted: readonly number[];
  try {
    granted = (await client.subscribeAsync(filters as Record<string, { qos: 0 | 1 }>)).map((grant) => grant.qos);
  } catch (error) {
    // MQTT.js rejects the whole call when any code is a failure, with the SUBACK attached.
    const codes = (error as { packet?: { granted?: unknown } }).packet?.granted;
    if (!Array.isArray(codes)) throw error;
    granted = codes as number[];
  }
  const refused = asked.flatMap(([filter], index) => {
    const code = granted.length === asked.length ? granted[index]! : 0x80;
    return code >= 0x80 ? [{ filter, code, reason: subackReason(code) }] : [];
  });
  if (refused.length > 0)
    throw new KilnError(
      "KILN_CONNECTION_FAILED",
      `${what}: the broker refused the subscription to ${refused.map((each) => `${each.filter} (SUBACK ${each.reason})`).join(", ")}; what it feeds cannot be trusted, so the session is not used: allow this client to subscribe to it in the broker's ACL (retried on the reconnect backoff)`,
      { retryable: true, details: { refused: refused.map(({ filter, code }) => ({ filter, code })) } },
    );
  return asked.flatMap(([filter, options], index) =>
    granted[index]! < options.qos ? [`${filter} (QoS ${granted[index]!}, asked ${options.qos})`] : [],
  );
}

/**
 * @internal The CONNECT options of every Kiln MQTT session (edge node and host): the caller's
 * `mqtt` options, then a clean session, no automatic reconnect (Kiln reconnects itself, with a
 * new Will) and `will`; with MQTT 5 also session expiry 0. No Maximum Packet Size is sent
 * (unless the caller's `mqtt.properties` set one): a broker drops, silently, what is larger than
 * that before it reaches the client (MQTT 5 §3.1.2.11.4), and both the edge node and the host
 * must count and audit what they refuse, so each checks the size itself (ADR 0043, amendments
 * fix19ab and fix19ac). `connectTimeoutMs` defaults to 10 s.
 */
export function sessionOptions(
  user: Omit<IClientOptions, "will" | "clean" | "reconnectPeriod">,
  session: {
    readonly connectTimeoutMs?: number;
    readonly will: IClientOptions["will"];
  },
): IClientOptions {
  return {
    connectTimeout: session.connectTimeoutMs ?? 10_000,
    ...user,
    clean: true,
    reconnectPeriod: 0,
    ...(user.protocolVersion === 5
      ? {
          properties: {
            ...user.properties,
            sessionExpiryInterval: 0,
          },
        }
      : {}),
    will: session.will,
  };
}

/**
 * @internal Checks a `maxPayloadBytes` option: an integer from 1 to 268,435,455 (MQTT's largest
 * packet) or absent.
 * @throws KilnValidationError (KILN_VALIDATION) naming `maxPayloadBytes` (or `path`).
 */
export function checkMaxPayloadBytes(what: string, value: unknown, path = "maxPayloadBytes"): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1 || value > 268_435_455)
    throw new KilnValidationError(what, [{ path, message: "must be an integer from 1 to 268435455 (bytes)" }]);
}

/**
 * Where a `brokerUrl`'s userinfo may lie: from after `scheme://` (or `//`, or the start) to its
 * last `@`. A password may hold an unencoded space, `/`, `?`, `#` or `@`, which `new URL()` reads
 * as the end of the userinfo (or refuses), so the last `@` anywhere is taken: at worst a host or
 * path after an `@` in a path is hidden too, never a password shown. Undefined without an `@`.
 */
function userinfoSpan(value: string): { readonly from: number; readonly to: number } | undefined {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(value);
  const from = scheme !== null ? scheme[0].length : value.startsWith("//") ? 2 : 0;
  const to = value.lastIndexOf("@");
  return to < from ? undefined : { from, to };
}

/**
 * Where a `brokerUrl`'s query string and fragment lie (a WebSocket broker may take a token there,
 * `wss://broker/mqtt?token=…`): from the first `?` or `#` after the userinfo (or the scheme) to
 * the end. Undefined without one.
 */
function querySpan(value: string): { readonly from: number } | undefined {
  const userinfo = userinfoSpan(value);
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(value);
  const after = userinfo !== undefined ? userinfo.to : scheme !== null ? scheme[0].length : 0;
  const rest = value.slice(after).search(/[?#]/);
  return rest < 0 ? undefined : { from: after + rest };
}

/**
 * @internal A `brokerUrl` as every message, health entry and event shows it: everything between
 * `//` (or the start) and its last `@` (a user name and password, `mqtt://user:pw@host`) replaced
 * by `***`, and so is everything from the `?` or `#` after the host on (a query string or
 * fragment, where a WebSocket broker may take a token), so no credential is echoed (IEC 62443-3-3
 * CR 1.5, authenticator protection), whatever characters the password holds (unencoded space,
 * `/`, `?`, `#`, `@`), and on a string that is not a URL too.
 * @example redactedBrokerUrl("mqtt://kiln:s3cret@broker:1883") // "mqtt://***@broker:1883"
 * @example redactedBrokerUrl("mqtt://kiln:a/b?c#d@broker:1883") // "mqtt://***@broker:1883"
 * @example redactedBrokerUrl("wss://broker/mqtt?token=s3cret") // "wss://broker/mqtt?***"
 */
export function redactedBrokerUrl(value: string): string {
  const query = querySpan(value);
  const shown = query === undefined ? value : `${value.slice(0, query.from + 1)}***`;
  const span = userinfoSpan(shown);
  return span === undefined ? shown : `${shown.slice(0, span.from)}***${shown.slice(span.to)}`;
}

/** Shorter query values are not taken as secrets in messages (they would blank unrelated text). */
const MIN_QUERY_SECRET = 4;

/**
 * @internal `text` (a message from the MQTT client or the network, about to be shown in an error,
 * health entry or event) with the userinfo of `brokerUrl` and its password, as written and
 * percent-decoded, replaced by `***` wherever they occur: no message ever carries the password,
 * even one the MQTT client built from the URL. (A very short password may blank unrelated
 * characters: a mangled message is preferred to an echoed password.)
 */
export function withoutBrokerSecret(text: string, brokerUrl: string): string {
  const span = userinfoSpan(brokerUrl);
  const query = querySpan(brokerUrl);
  if (span === undefined && query === undefined) return text;
  const secrets = new Set([redactedBrokerUrl(brokerUrl) === brokerUrl ? "" : brokerUrl]);
  if (query !== undefined) {
    // The query string and fragment, and each value in them (as written and decoded).
    const tail = brokerUrl.slice(query.from);
    secrets.add(tail.slice(1));
    for (const part of tail.slice(1).split(/[&;#?]/)) {
      const value = part.slice(part.indexOf("=") + 1);
      for (const each of [value, safeDecode(value)])
        if (each !== undefined && each.length >= MIN_QUERY_SECRET) secrets.add(each);
    }
  }
  if (span === undefined) return replaceAll(text, secrets);
  const userinfo = brokerUrl.slice(span.from, span.to);
  const colon = userinfo.indexOf(":");
  secrets.add(userinfo);
  if (colon >= 0) {
    const password = userinfo.slice(colon + 1);
    secrets.add(password);
    try {
      secrets.add(decodeURIComponent(password));
    } catch {
      // Not percent-encoded text: the raw form above covers it.
    }
  }
  return replaceAll(text, secrets);
}

function safeDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value.replace(/\+/g, " "));
  } catch {
    return undefined;
  }
}

/** `text` with every one of `secrets` replaced by `***`, longest first (a password inside the userinfo is not cut before the userinfo is). */
function replaceAll(text: string, secrets: ReadonlySet<string>): string {
  let shown = text;
  for (const secret of [...secrets].filter((each) => each !== "").sort((a, b) => b.length - a.length))
    shown = shown.split(secret).join("***");
  return shown;
}

/** URL schemes MQTT.js connects with (TCP, TLS, WebSocket). */
const BROKER_SCHEMES = ["mqtt:", "mqtts:", "tcp:", "tls:", "ssl:", "ws:", "wss:"];

/**
 * @internal Checks a `brokerUrl` option: a URL with a scheme MQTT.js connects with and a host,
 * e.g. `mqtt://broker.plant:1883`. Without one (`localhost:1883`) MQTT.js would fail each attempt
 * with an unrelated error and the caller would retry for ever. An `@` after the host (in the path,
 * query or fragment) is refused too: it is the mark of a password whose unencoded `/`, `?` or `#`
 * made the URL point at another host.
 * @throws KilnValidationError (KILN_VALIDATION) naming `brokerUrl`.
 */
export function checkBrokerUrl(what: string, value: unknown): void {
  let url: URL | undefined;
  try {
    url = typeof value === "string" ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (url !== undefined && `${url.pathname}${url.search}${url.hash}`.includes("@"))
    // `mqtt://kiln:4711/pw@broker` is a valid URL whose host is "kiln" (port 4711, path "/pw@broker"):
    // an unencoded `/`, `?` or `#` in a password moves the real host into the path, and MQTT.js
    // would send the credentials' remainder to the wrong host.
    throw new KilnValidationError(what, [
      {
        path: "brokerUrl",
        message: `has an "@" after its host (${JSON.stringify(redactedBrokerUrl(value as string).slice(0, 200))}): a user name or password holding "/", "?", "#" or "@" must be percent-encoded (encodeURIComponent), e.g. "mqtt://kiln:pa%2Fss@broker.plant:1883"`,
      },
    ]);
  if (url === undefined || !BROKER_SCHEMES.includes(url.protocol) || url.hostname === "")
    throw new KilnValidationError(what, [
      {
        path: "brokerUrl",
        message: `must be a URL with a scheme (${BROKER_SCHEMES.map((scheme) => scheme.slice(0, -1)).join(", ")}) and a host, e.g. "mqtt://broker.plant:1883"; got ${JSON.stringify(typeof value === "string" ? redactedBrokerUrl(value).slice(0, 200) : typeof value)}`,
      },
    ]);
}

/**
 * @internal The option keys an options object may hold: `true` for a key taken as it is, or the
 * keys of a nested options object (checked the same way, one level per map).
 */
export type OptionKeys<T> = {
  readonly [K in keyof Required<T>]: true | OptionKeys<NonNullable<T[K]>>;
};

/** @internal The keys of a reconnect or retry backoff ({@link ReconnectBackoff}). */
export const BACKOFF_OPTION_KEYS: OptionKeys<ReconnectBackoff> = {
  initialDelayMs: true,
  maxDelayMs: true,
  multiplier: true,
  jitter: true,
};

/**
 * @internal Checks the shape of an options object (edge node or host) before anything is done with
 * it: every key must be one of `known` (a typo such as `rebirthIntervalMS` is refused, not ignored),
 * also inside the nested options objects `known` lists (`storeAndForward.maxSampels`,
 * `reconnect.initialDelay`), which must then be objects; and `mqtt.protocolVersion`, when given,
 * must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0), the two versions Kiln speaks.
 * @throws KilnValidationError (KILN_VALIDATION) naming each unknown key by its path, or the
 *   protocol version path.
 */
export function checkOptionShape<T extends object>(what: string, options: unknown, known: OptionKeys<T>): void {
  const issues: { path: string; message: string }[] = [];
  if (typeof options !== "object" || options === null)
    throw new KilnValidationError(what, [{ path: "", message: "must be an options object" }]);
  const noun = what.replace(/ options$/, "");
  const walk = (value: object, keys: { readonly [key: string]: unknown }, prefix: string): void => {
    for (const [key, inner] of Object.entries(value)) {
      const path = `${prefix}${key}`;
      const nested = Object.hasOwn(keys, key) ? keys[key] : undefined;
      if (nested === undefined) {
        issues.push({
          path,
          message: prefix === "" ? `is not a ${noun} option` : `is not a ${noun} ${prefix.slice(0, -1)} option`,
        });
      } else if (nested !== true && inner !== undefined) {
        if (typeof inner !== "object" || inner === null || Array.isArray(inner))
          issues.push({ path, message: "must be an options object" });
        else walk(inner, nested as { readonly [key: string]: unknown }, `${path}.`);
      }
    }
  };
  walk(options, known as { readonly [key: string]: unknown }, "");
  const version = (options as { mqtt?: { protocolVersion?: unknown } }).mqtt?.protocolVersion;
  if (version !== undefined && version !== 4 && version !== 5)
    issues.push({ path: "mqtt.protocolVersion", message: "must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0)" });
  if (issues.length > 0) throw new KilnValidationError(what, issues);
}
