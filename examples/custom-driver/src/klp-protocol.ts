import { z } from "zod";
import type { TagDataType, TagValue } from "@kiln/core";

/** The error codes of the Kiln Line Protocol (KLP), in `ERR <code> <message>` replies and `ERR:<code>` read items. */
export const KlpErrorCodes = { Syntax: 1, UnknownAddress: 2, ReadOnlyAddress: 3 } as const;

/** A KLP address: a letter, then letters, digits, `_` or `.` (no spaces: they separate tokens). */
export const klpAddressSchema = z
  .string({ error: 'a KLP tag needs a string address, e.g. "ZONE1.TEMP"' })
  .regex(/^[A-Za-z][A-Za-z0-9_.]{0,63}$/, "a KLP address is a letter then up to 63 letters, digits, _ or .");

/** Encodes a value as one KLP token: `1`/`0` for booleans, percent-encoded text for strings. */
export function encodeKlpValue(value: TagValue): string {
  if (typeof value === "boolean") return value ? "1" : "0";
  return typeof value === "string" ? encodeURIComponent(value) : String(value);
}

/** Decodes a KLP token as a value of `dataType`; undefined when the token does not fit it. */
export function decodeKlpValue(token: string, dataType: TagDataType): TagValue | undefined {
  if (dataType === "bool") return token === "1" ? true : token === "0" ? false : undefined;
  if (dataType === "string") {
    try {
      return decodeURIComponent(token);
    } catch {
      return undefined;
    }
  }
  const value = Number(token);
  return token !== "" && Number.isFinite(value) ? value : undefined;
}
