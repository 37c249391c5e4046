import type { Migration } from "./migration";

/**
 * A column for the values of array tags (`arrayLength`, docs/adr/0038-array-tags.md): one
 * sample per array, as a JSON array (see `encodeArrayValue`). A row sets at most one of the value
 * columns. Adding a nullable column without a default does not rewrite the table.
 */
export const arrayValues: Migration = {
  version: 5,
  name: "array tag values",
  statements: (schema) => [`ALTER TABLE ${schema}.samples ADD COLUMN value_array jsonb`],
};
