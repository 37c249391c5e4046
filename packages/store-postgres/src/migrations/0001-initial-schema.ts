import type { Migration } from "./migration";

/**
 * Tables of every store port. Samples keep one narrow row per (tag, time): the value lives in
 * one of four nullable columns (a NULL costs one bit in the row's null bitmap, so a float row
 * does not pay for the text column), the quality is the OPC UA status code as a signed int4
 * (bad codes are negative), and there is no foreign key to `tags`, which would add a trigger
 * call per ingested row.
 */
export const initialSchema: Migration = {
  version: 1,
  name: "initial schema",
  statements: (schema) => [
    `CREATE TABLE ${schema}.tags (
      id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      name text NOT NULL UNIQUE,
      data_type text,
      unit text,
      range_min double precision,
      range_max double precision,
      description text,
      registered_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE TABLE ${schema}.samples (
      tag_id integer NOT NULL,
      quality integer NOT NULL,
      time timestamptz NOT NULL,
      value_float double precision,
      value_int bigint,
      value_bool boolean,
      value_text text,
      quality_reason text,
      PRIMARY KEY (tag_id, time)
    )`,
    `CREATE INDEX samples_time_brin ON ${schema}.samples USING brin (time)`,
    `CREATE TABLE ${schema}.events (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      aggregate_id text NOT NULL,
      version integer NOT NULL CHECK (version > 0),
      type text NOT NULL,
      payload jsonb NOT NULL,
      at timestamptz NOT NULL,
      recorded_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (aggregate_id, version)
    )`,
    `CREATE TABLE ${schema}.processes (
      id text PRIMARY KEY,
      machine_id text NOT NULL,
      recipe_name text NOT NULL,
      recipe_version integer NOT NULL,
      parameters jsonb NOT NULL,
      status text NOT NULL,
      created_at timestamptz NOT NULL,
      started_at timestamptz,
      ended_at timestamptz,
      last_completed_step text,
      reason text,
      version integer NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE INDEX processes_machine_created ON ${schema}.processes (machine_id, created_at)`,
    `CREATE INDEX processes_created ON ${schema}.processes (created_at)`,
    `CREATE TABLE ${schema}.recipes (
      name text NOT NULL,
      version integer NOT NULL CHECK (version > 0),
      definition jsonb NOT NULL,
      saved_at timestamptz NOT NULL,
      PRIMARY KEY (name, version)
    )`,
    `CREATE TABLE ${schema}.alarm_history (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      alarm_id text NOT NULL,
      tag text NOT NULL,
      kind text NOT NULL,
      priority integer NOT NULL,
      from_state text NOT NULL,
      to_state text NOT NULL,
      cause text NOT NULL,
      value jsonb,
      principal text,
      at timestamptz NOT NULL
    )`,
    `CREATE INDEX alarm_history_at ON ${schema}.alarm_history (at, id)`,
    `CREATE TABLE ${schema}.audit_log (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      principal text NOT NULL,
      roles text[] NOT NULL,
      action text NOT NULL,
      target text NOT NULL,
      old_value jsonb,
      new_value jsonb,
      outcome text NOT NULL CHECK (outcome IN ('allowed', 'denied', 'failed')),
      reason text,
      at timestamptz NOT NULL
    )`,
    `CREATE INDEX audit_log_at ON ${schema}.audit_log (at, id)`,
  ],
};
