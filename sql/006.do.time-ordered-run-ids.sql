-- Run ids ordered by time (UUID version 7, RFC 9562: 48 bits of Unix milliseconds, then random bits):
-- a new run's id lands at the right edge of ops.runs' primary key and of ops.run_events' run_id
-- index instead of a random page of each, so a large table does not make every insert touch (and,
-- after a checkpoint, log in full) a page of its own. PostgreSQL 15 has no uuidv7(): this is one.
CREATE FUNCTION ops.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(
    set_bit(set_bit(set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
        placing substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6),
      52, 1), 53, 1), 54, 1), 55, 0),
    'hex')::uuid
$$;

ALTER TABLE ops.runs ALTER COLUMN run_id SET DEFAULT ops.uuid_v7();
