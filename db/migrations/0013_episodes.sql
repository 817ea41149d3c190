-- finxd: compatible_from 9
--
-- Issue 14: manual syncs claimed by committed rows, not held locks, and
-- the bookkeeping of the events sent once per connection and deadline or
-- episode (connection.expiring, .refresh_failing, .recovered) and of
-- links that expire without a callback.  Only columns without defaults
-- that older binaries never read, and indexes: schema-9 binaries run
-- beside it (they neither set nor clear these columns, see below).

-- A sync is started in three short steps: a committed row in status
-- STARTING with a deadline (next_poll_at) and a claim, the finX call
-- with no transaction open, then the answer compare-and-set on that
-- claim.  A poll claims a due sync the same way: next_poll_at moved to
-- the claim's deadline, claim set, finX asked, the answer set on the
-- claim.  A claim whose deadline passed is another worker's to take.
ALTER TABLE syncs ADD COLUMN claim uuid;
-- At most one open sync per connection: a second request finds the
-- running (or starting) one instead of asking finX for another.  Two
-- open syncs of one connection were never possible under the advisory
-- lock of schema 9; should a hand-edited database hold some, all but
-- the newest are closed so the index can be built.
UPDATE syncs s SET status = 'CANCELLED', ended_at = now(),
	updated_at = now()
	WHERE status NOT IN ('COMPLETED', 'FAILED', 'ERROR', 'CANCELLED')
	AND EXISTS (SELECT 1 FROM syncs n WHERE n.connection_id =
		s.connection_id AND n.status NOT IN ('COMPLETED', 'FAILED',
		'ERROR', 'CANCELLED') AND (n.created_at, n.id) >
		(s.created_at, s.id));
CREATE UNIQUE INDEX syncs_one_open_idx ON syncs (connection_id)
	WHERE status NOT IN ('COMPLETED', 'FAILED', 'ERROR', 'CANCELLED');

-- Pending links past expires_at, for the scan that expires them (with
-- link.completed).  Those that expired before this schema are expired
-- here, told to no one: they ended before there were events, and the
-- first scan would otherwise send a burst of old news.
UPDATE links SET status = 'expired', completed_at = expires_at
	WHERE status = 'pending' AND expires_at <= now() AND
	(used_at IS NULL OR used_at < now() - interval '1 hour');
CREATE INDEX links_pending_expiry_idx ON links (expires_at)
	WHERE status = 'pending';

ALTER TABLE connections
	-- the first failed refresh of the current streak (consecutive_failures
	-- going from 0 to 1); NULL when the last refresh succeeded
	ADD COLUMN failing_since timestamptz,
	-- when connection.refresh_failing was sent for this streak; the next
	-- successful rotation sends connection.recovered and clears both
	ADD COLUMN failing_notice_at timestamptz,
	-- the refresh-token and consent deadlines connection.expiring was
	-- sent for: a new deadline (a renewed token, a reauth) differs
	ADD COLUMN refresh_expiry_notice timestamptz,
	ADD COLUMN consent_expiry_notice timestamptz;

-- The scans' indexes hold only the rows still to be told: a connection
-- leaves them once its notice is sent and comes back with a new deadline
-- or a new streak.
CREATE INDEX connections_refresh_expiry_idx ON connections
	(refresh_expires_at) WHERE status = 'active' AND
	refresh_expires_at IS DISTINCT FROM refresh_expiry_notice;
CREATE INDEX connections_consent_expiry_idx ON connections
	(consent_expires_at) WHERE status = 'active' AND
	consent_expires_at IS DISTINCT FROM consent_expiry_notice;
CREATE INDEX connections_failing_idx ON connections (failing_since)
	WHERE status = 'active' AND consecutive_failures > 0 AND
	failing_notice_at IS NULL;
