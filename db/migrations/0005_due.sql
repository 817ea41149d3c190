-- finxd: compatible_from 4
--
-- One indexed "next time anything is due" per connection: the later of
-- its refresh due time (which a lease moves past its deadline) and its
-- backoff.  A claim is then one index range scan that stops at now(),
-- however many connections wait in backoff (a finX outage makes that
-- every connection).  A generated column, so binaries of schema 4, which
-- write refresh_due_at and next_attempt_at but know nothing of this,
-- keep it right: they can run beside this schema (rolling deploy).
ALTER TABLE connections ADD COLUMN next_due_at timestamptz
	GENERATED ALWAYS AS (
		CASE WHEN status = 'active' AND refresh_token IS NOT NULL
		THEN greatest(refresh_due_at, next_attempt_at) END) STORED;
CREATE INDEX connections_next_due_idx ON connections (next_due_at)
	WHERE next_due_at IS NOT NULL;

-- Revocations go refresh token first per connection (server/refresh.c,
-- revoke_one): the claim looks for a connection's pending refresh token.
CREATE INDEX revocations_conn_idx ON revocations (connection_id, kind);
