-- finxd: compatible_from 9
--
-- finX notifications (SPEC "finX notifications", finx-api.md 5.4; design
-- in server/notify.c).  One row per notification finxd keeps at finX: one
-- per account of a connection, observing the account's new transactions,
-- with notify_uri FINXD_PUBLIC_URL/finx/notify/<secret>.  Only the
-- SHA-256 of the secret is kept; a request's secret is looked up by its
-- hash.  Rows are made after a connection's pull (for the accounts it
-- brought), registered by the workers, and removed at finX by them when
-- the connection is deleted.
--
-- Schema-9 binaries run beside this one and know nothing of it: they
-- register nothing, and a connection they delete keeps its notifications
-- at finX (which then answer 404 here).
CREATE TABLE finx_notifications (
	id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	connection_id    uuid NOT NULL REFERENCES connections (id)
		ON DELETE CASCADE,
	account_id       uuid NOT NULL REFERENCES accounts (id)
		ON DELETE CASCADE,
	-- due: to register at next_attempt_at; registering: a worker's claim
	-- runs until next_attempt_at (then it is due again); registered;
	-- removing: the connection was deleted, to remove at finX
	state            text NOT NULL DEFAULT 'due'
		CHECK (state IN ('due', 'registering', 'registered',
		    'removing')),
	-- lower-case hex SHA-256 of the secret in the notify_uri (NULL while
	-- due or removing: no secret is valid then)
	secret_hash      text,
	-- finX's notification_id, once registered
	finx_id          text,
	next_attempt_at  timestamptz NOT NULL DEFAULT now(),
	attempts         integer NOT NULL DEFAULT 0,
	last_error       text,
	-- removing: the connection's token revocations wait for the removal
	-- until then at most (it needs the connection's access token)
	hold_until       timestamptz,
	-- the last notification that came in
	notified_at      timestamptz,
	-- a notification came while the connection's pull ran: the workers
	-- schedule the next pull once it has ended
	pull_pending     boolean NOT NULL DEFAULT false,
	created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX finx_notifications_account_idx
	ON finx_notifications (account_id);
CREATE UNIQUE INDEX finx_notifications_secret_idx
	ON finx_notifications (secret_hash) WHERE secret_hash IS NOT NULL;
CREATE INDEX finx_notifications_conn_idx
	ON finx_notifications (connection_id);
CREATE INDEX finx_notifications_due_idx
	ON finx_notifications (next_attempt_at)
	WHERE state IN ('due', 'registering');
CREATE INDEX finx_notifications_removing_idx
	ON finx_notifications (next_attempt_at) WHERE state = 'removing';
CREATE INDEX finx_notifications_pending_idx
	ON finx_notifications (connection_id) WHERE pull_pending;
