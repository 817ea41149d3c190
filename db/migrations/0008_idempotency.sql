-- finxd: compatible_from 7
--
-- Idempotency keys (SPEC "Lists, idempotency, changes"; server/
-- idempotency.c).  A request carrying an Idempotency-Key first commits a
-- claim (claim, locked_until) with no transaction held across finX, then
-- stores its answer here; the same key with the same request answers
-- that answer again for 24 hours, from any process.  The answer body is
-- sealed like a token (a link's location carries finX's one-time widget
-- token).  Binaries of schema 7 know nothing of the table and run every
-- request anew: they can serve beside this schema (rolling deploy).

CREATE TABLE idempotency_keys (
	-- struct api_key.id of the key that sent it: keys are per API key
	api_key_id   text NOT NULL,
	key          text NOT NULL,
	method       text NOT NULL,
	path         text NOT NULL,
	-- SHA-256 of the raw request body
	body_sha256  bytea NOT NULL,
	-- the request holding the key: set by each claim, the compare-and-set
	-- key of its completion, the row of body's sealing context and the
	-- order `finxd rekey` walks the table in
	claim        uuid NOT NULL UNIQUE,
	-- while status is NULL: the claim's deadline, after which another
	-- request takes it over (its holder died)
	locked_until timestamptz NOT NULL,
	-- the answer, once there is one (below 500 only)
	status       integer,
	content_type text,
	body         text,
	created_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (api_key_id, key)
);

-- the periodic prune of rows past 24 hours
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
