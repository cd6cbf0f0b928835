-- Hardening II (issue 28): what one captured delivery can make is bounded, and erasure stays erased.
--
-- 1. One open payload-conflict exception per run. A conflicting delivery used to raise an exception
--    of its own holding a full copy of its payload: one captured body replayed with a trailing `&=`
--    (Twilio) or under another delivery id (GitHub) raised thousands. Now the run's one open
--    payload-conflict exception counts the conflicting deliveries and keeps a copy of each distinct
--    conflicting body (by its hash) up to a small number; beyond that they are counted, never stored.
--    details: { deliveries, copies: [{ body_sha256, payload, excerpt, delivery, deliveries }], uncopied }.
-- 2. ops.run_keys.erased: a key whose run's payload was erased. A later delivery of it (a redelivery,
--    or a conflicting body) is recorded as a delivery, its body never kept again.

ALTER TABLE ops.run_keys ADD COLUMN erased boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN ops.run_keys.erased IS 'The payload of its run was erased: no later delivery of this key keeps a body.';

-- Exceptions written before this migration, in the new form.
UPDATE ops.exceptions
SET details = jsonb_build_object('deliveries', 1, 'uncopied', 0, 'copies', jsonb_build_array(details || jsonb_build_object('deliveries', 1)
  || CASE WHEN details ? 'payload' THEN jsonb_build_object('excerpt', left((details->'payload')::text, 2000)) ELSE '{}' END))
WHERE reason = 'payload_conflict' AND NOT details ? 'copies';

-- Several open conflicts of one run: the oldest counts the others, which are closed into it.
WITH ranked AS (
  SELECT exception_id, run_id, details, row_number() OVER (PARTITION BY run_id ORDER BY created_at, exception_id) AS n,
    first_value(exception_id) OVER (PARTITION BY run_id ORDER BY created_at, exception_id) AS kept
  FROM ops.exceptions WHERE reason = 'payload_conflict' AND status = 'open'
), folded AS (
  UPDATE ops.exceptions e SET status = 'dismissed', closed_at = now(), closed_by = 'hookgate:migration-013',
    note = 'folded into exception ' || r.kept
  FROM ranked r WHERE e.exception_id = r.exception_id AND r.n > 1
  RETURNING e.run_id, e.details
)
UPDATE ops.exceptions e
SET details = jsonb_set(e.details, '{deliveries}', to_jsonb((e.details->>'deliveries')::int + f.extra))
FROM (SELECT run_id, count(*)::int AS extra FROM folded GROUP BY run_id) AS f
WHERE e.run_id = f.run_id AND e.reason = 'payload_conflict' AND e.status = 'open';

CREATE UNIQUE INDEX exceptions_one_open_conflict_idx ON ops.exceptions (run_id) WHERE reason = 'payload_conflict' AND status = 'open';

-- An open conflict's details with more conflicting deliveries of its run added. `added` is a batch's
-- deliveries ({ copies: [{ body_sha256, payload, delivery, deliveries }] }, a copy without a payload
-- object for a delivery whose body is not to be kept) or another such result (with its `uncopied`).
-- A body already kept counts its deliveries on its copy; a new body is kept while fewer than
-- `max_copies` are; any other delivery is counted in `uncopied`, never stored.
CREATE FUNCTION ops.conflict_details(kept jsonb, added jsonb, max_copies integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  copies jsonb := coalesce(kept->'copies', '[]'::jsonb);
  uncopied integer := coalesce((kept->>'uncopied')::integer, 0) + coalesce((added->>'uncopied')::integer, 0);
  -- A result counts its deliveries (some only in `uncopied`); a batch's deliveries are its copies.
  total integer := coalesce((kept->>'deliveries')::integer, 0) + coalesce((added->>'deliveries')::integer,
    (SELECT sum(coalesce((c->>'deliveries')::integer, 1)) FROM jsonb_array_elements(added->'copies') AS c)::integer, 0);
  copy jsonb;
  n integer;
  at integer;
BEGIN
  FOR copy IN SELECT value FROM jsonb_array_elements(coalesce(added->'copies', '[]'::jsonb)) LOOP
    n := coalesce((copy->>'deliveries')::integer, 1);
    SELECT i - 1 INTO at FROM jsonb_array_elements(copies) WITH ORDINALITY AS k (c, i) WHERE c->>'body_sha256' = copy->>'body_sha256';
    IF at IS NOT NULL THEN
      copies := jsonb_set(copies, ARRAY[at::text, 'deliveries'], to_jsonb(coalesce((copies->at->>'deliveries')::integer, 1) + n));
    ELSIF jsonb_typeof(copy->'payload') = 'object' AND jsonb_array_length(copies) < max_copies THEN
      copies := copies || jsonb_build_array(copy || jsonb_build_object('deliveries', n));
    ELSE
      uncopied := uncopied + n;
    END IF;
  END LOOP;
  RETURN coalesce(kept, '{}'::jsonb) || jsonb_build_object('deliveries', total, 'copies', copies, 'uncopied', uncopied);
END
$$;

-- Erasure (admin API): what a run's history says besides its payload. The gateway's own messages put
-- what another party answered after a colon (`destination b answered 400: <its answer>`): erased,
-- the text keeps what happened and drops what was echoed.
CREATE FUNCTION ops.without_echo(message text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN position(':' IN message) > 0 THEN split_part(message, ':', 1) || ': [erased]' ELSE message END
$$;
