import { KilnError } from "@kiln/core";
import type { SqlQueryable } from "./sql-client";

/**
 * Refuses a database whose server encoding is not UTF-8, before anything is created in it.
 *
 * Kiln's text (tag names, string samples, audit principals, targets, comments, JSON values) is
 * Unicode, and every value must be storable (ADR 0012). In a database of another encoding
 * (LATIN1, WIN1252, ...) a character the encoding lacks (`€` in LATIN1) is refused by the server
 * with SQLSTATE 22P05 (untranslatable character): a caller could then make an audit entry or a
 * sample unstorable by choosing a character (adversarial review 15w). `SQL_ASCII` is refused too:
 * PostgreSQL then neither converts nor validates (its manual calls it "a declaration of ignorance
 * about the encoding"), so text another client wrote in another encoding reads back as U+FFFD, a
 * wrong value shown as stored; its text functions count bytes, and jsonb refuses `\u` escapes
 * above U+007F ("conversion between UTF8 and SQL_ASCII is not supported").
 *
 * @throws KilnError `KILN_STORE_ERROR` (not retryable; `details: { rule: "encoding", serverEncoding,
 *   database }`) when `server_encoding` is not `UTF8`.
 */
export async function checkServerEncoding(client: SqlQueryable): Promise<void> {
  const { rows } = await client.query<{ encoding: string; database: string }>(
    "SELECT current_setting('server_encoding') AS encoding, current_database() AS database",
  );
  const encoding = rows[0]?.encoding ?? "(unknown)";
  if (encoding.toUpperCase() === "UTF8") return;
  const database = rows[0]?.database ?? "(unknown)";
  throw new KilnError(
    "KILN_STORE_ERROR",
    `The PostgreSQL database "${database}" has server encoding ${encoding}; Kiln needs UTF8, ` +
      "since a character the encoding cannot hold would make an audit entry or a sample unstorable. Create the " +
      "database with UTF-8 (CREATE DATABASE name ENCODING 'UTF8' TEMPLATE template0, or createdb -E UTF8 -T " +
      "template0 name) and point the store at it; nothing was created in this one.",
    { retryable: false, details: { rule: "encoding", serverEncoding: encoding, database } },
  );
}
