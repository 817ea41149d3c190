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

-- When a process's heartbeat last resumed after a break (a gap of more
-- than 5 s).  A process may take over a lease only while its own
-- heartbeat is fresh and has been for longer than the stale bound,
-- judged by PostgreSQL when the claim runs: a claim that waited in a
-- queue (PgBouncer) through an outage does not act on a stale view.
-- Schema-4 binaries leave it at their start time and judge takeovers
-- by their own clock, as before.
ALTER TABLE finxd_processes ADD COLUMN live_since timestamptz NOT NULL
	DEFAULT now();
