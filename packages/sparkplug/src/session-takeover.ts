import type { Clock } from "@kiln/core";
import type { MqttClient } from "mqtt";

/** MQTT 5 DISCONNECT reason code "Session taken over" (MQTT 5.0, 3.14.2.1). */
export const SESSION_TAKEN_OVER = 0x8e;

/**
 * MQTT 3.1.1 has no DISCONNECT from the broker: a session the broker closes this soon after its
 * CONNACK, {@link SUSPECT_AFTER} times in a row, is taken as taken over by another client.
 */
const SHORT_SESSION_MS = 10_000;
const SUSPECT_AFTER = 3;

interface Followed {
  readonly clientId: string | undefined;
  /** The session's MQTT username: the client id a broker that derives ids from logins gives it. */
  readonly username: string | undefined;
  readonly connectedAt: number;
  takenOver: boolean;
  /** MQTT.js's own keepalive ended it (the broker did not answer, or the client read nothing): not the broker's close. */
  timedOut: boolean;
}

/**
 * @internal Tells when another client took over an MQTT session of Kiln's (adversarial review
 * adv19p M2): the broker ends the older of two sessions with one client id, so two hosts or edge
 * nodes given the same `mqtt.clientId` (or a client using a host's `<clientId>-deaths`) end each
 * other's session at every reconnect, for ever. Used by the host (main session and death watch)
 * and the edge node alike.
 *
 * - MQTT 5: the broker's DISCONNECT with reason code 0x8E ("Session taken over") says so.
 * - Otherwise (MQTT 3.1.1; mosquitto 2.0 over MQTT 5 too) the broker just closes the
 *   connection. With a client id given (one MQTT.js makes
 *   up is nobody else's), {@link SUSPECT_AFTER} sessions in a row closed by the broker within
 *   {@link SHORT_SESSION_MS} of their CONNACK are taken as taken over ("likely"); then every
 *   session it closes is, until one lasts `clearAfterMs`.
 *
 * A session taken over proves nothing about the broker: the caller reconnects with
 * `unprovenLoss`, so the backoff grows to its cap instead of starting again at its first step.
 * The problem stays named in {@link SessionTakeover.problem} until a session lasts `clearAfterMs`.
 */
export class SessionTakeover {
  readonly #clock: Clock;
  readonly #clearAfterMs: number;
  readonly #followed = new WeakMap<MqttClient, Followed>();
  #current: { readonly client: MqttClient; readonly followed: Followed } | undefined;
  #shortLosses = 0;
  #last: { readonly text: string; readonly at: number } | undefined;

  /** `clearAfterMs`: how long a session must last to clear the problem (ms; at least 60 s is used). */
  constructor(clock: Clock, clearAfterMs: number) {
    this.#clock = clock;
    this.#clearAfterMs = Math.max(60_000, clearAfterMs);
  }

  /** Follows `client`, whose session was just accepted (CONNACK) under `clientId` (undefined: made up by MQTT.js). */
  follow(client: MqttClient, clientId: string | undefined): void {
    const username = (client.options as { username?: unknown } | undefined)?.username;
    const followed: Followed = {
      clientId,
      username: typeof username === "string" && username !== "" ? username : undefined,
      connectedAt: this.#clock.now(),
      takenOver: false,
      timedOut: false,
    };
    this.#followed.set(client, followed);
    this.#current = { client, followed };
    client.on("disconnect", (packet: { reasonCode?: number }) => {
      if (packet.reasonCode === SESSION_TAKEN_OVER) followed.takenOver = true;
    });
    client.on("error", (error: Error) => {
      if (error.message === "Keepalive timeout") followed.timedOut = true;
    });
  }

  /**
   * Why the session of `client` ended, when it was lost (not ended by Kiln) because another
   * client took it over, or likely did: a sentence naming the client id, for the link's reason.
   * Undefined otherwise. Call once, when the session is lost.
   *
   * `alternative`: another likely cause the caller has evidence of (a packet of its own over the
   * broker's likely limit just before the loss). Without the broker's explicit MQTT 5 "Session
   * taken over" the evidence for both is of the same kind (a session closed soon after it began),
   * so a suspicion names both, never hides the alternative (adv19r M2).
   */
  lost(client: MqttClient, alternative?: string): string | undefined {
    const followed = this.#followed.get(client);
    if (followed === undefined || client.disconnecting) return undefined;
    const lasted = this.#clock.now() - followed.connectedAt;
    const id = JSON.stringify(followed.clientId ?? "(made up by MQTT.js)");
    if (followed.takenOver) {
      this.#shortLosses = SUSPECT_AFTER;
      return this.#say(
        `client id ${id} in use by another client: the broker ended this session after ${lasted} ms (MQTT 5 DISCONNECT 0x8E Session taken over); two clients with one client id end each other's session at every reconnect: give each its own mqtt.clientId (a host also uses "<clientId>-deaths")`,
      );
    }
    // Without a client id given, MQTT.js makes one up that is nobody else's, unless the broker
    // derives client ids from logins (mosquitto use_username_as_clientid): then two clients with
    // one login end each other's session as two with one client id do (adv19 M3).
    if ((followed.clientId === undefined && followed.username === undefined) || followed.timedOut) return undefined;
    const suspected = this.#shortLosses >= SUSPECT_AFTER;
    if (lasted >= (suspected ? this.#clearAfterMs : SHORT_SESSION_MS)) {
      this.#shortLosses = 0;
      return undefined;
    }
    this.#shortLosses++;
    if (this.#shortLosses < SUSPECT_AFTER) return undefined;
    if (followed.clientId === undefined)
      return this.#say(
        `login ${JSON.stringify(followed.username)} likely in use by another client: the broker closed ${suspected ? "this session" : `${this.#shortLosses} sessions in a row`} within ${suspected ? `${lasted} ms` : `${SHORT_SESSION_MS / 1_000} s`} of accepting it, without a reason, as a broker that derives client ids from logins (mosquitto use_username_as_clientid; use_identity_as_username or use_subject_as_username with certificates) ends the older session of a login at every new CONNECT: give each client its own login (a host's death watch its own too: deathWatchMqtt), or turn that broker setting off${alternative === undefined ? "" : `; or: the session ended${alternative}`}`,
      );
    return this.#say(
      `client id ${id} likely in use by another client: the broker closed ${suspected ? "this session" : `${this.#shortLosses} sessions in a row`} within ${suspected ? `${lasted} ms` : `${SHORT_SESSION_MS / 1_000} s`} of accepting it, without a reason (MQTT 3.1.1 has none, and mosquitto sends none even over MQTT 5), as a broker ends the older session of a client id at every new CONNECT: give each client its own mqtt.clientId (a host also uses "<clientId>-deaths")${alternative === undefined ? "" : `; or: the session ended${alternative}`}`,
    );
  }

  /**
   * The problem for health while a session was taken over and none has lasted `clearAfterMs`
   * since, else undefined. The caller shows it while connected (while reconnecting, the link's
   * reason says it).
   */
  problem(): string | undefined {
    const current = this.#current;
    if (
      this.#last !== undefined &&
      current !== undefined &&
      current.client.connected &&
      this.#clock.now() - current.followed.connectedAt >= this.#clearAfterMs
    ) {
      this.#last = undefined;
      this.#shortLosses = 0;
    }
    return this.#last === undefined
      ? undefined
      : `${this.#last.text} (last at ${new Date(this.#last.at).toISOString()}; reconnecting on the growing backoff)`;
  }

  #say(text: string): string {
    this.#last = { text, at: this.#clock.now() };
    return text;
  }
}
