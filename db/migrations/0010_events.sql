-- finxd: compatible_from 9
--
-- The partner's event log and webhook outbox (SPEC "Events and webhooks";
-- design in server/EVENTS.md).  Every state change of SPEC's event table
-- inserts its row here in the transaction of the change itself.  The
-- older `events` table stays the internal audit trail it was.
--
-- Order.  A reader of GET /v1/events walks (xid, seq): the inserting
-- transaction's id, and a sequence within it.  seq alone is not commit
-- order (a transaction that took seq 5 may commit after one that took 6,
-- and a reader that had passed 6 would never see 5), and PostgreSQL has
-- no commit-ordered key for free.  Instead a reader shows only rows whose
-- xid is below its snapshot's xmin: every transaction below xmin has
-- ended, so no row can appear there later, and any transaction that is
-- running or not yet begun has an xid >= xmin.  The price is that a
-- reader waits for the oldest transaction with an xid in the whole
-- cluster: nothing in finxd keeps one open across a call to finX or to a
-- webhook endpoint.
--
-- Schema-9 binaries run beside this one and write no rows here: during a
-- rolling deploy, changes they make have no event.

CREATE TABLE event_log (
	seq              bigserial NOT NULL,
	id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	xid              xid8 NOT NULL DEFAULT pg_current_xact_id(),
	at               timestamptz NOT NULL DEFAULT now(),
	type             text NOT NULL,
	connection_id    uuid,
	link_id          uuid,
	data             jsonb NOT NULL,
	-- an event sent once per episode (connection.expiring: connection,
	-- what and deadline) names it here; a second insert does nothing
	once_key         text,
	-- delivery: pending until delivered, failed or filtered out ('none')
	delivery         text NOT NULL DEFAULT 'pending'
		CHECK (delivery IN ('pending', 'delivered', 'failed', 'none')),
	-- the start of the 3-day window: the event, or its redelivery
	queued_at        timestamptz NOT NULL DEFAULT now(),
	-- when the next attempt may start; while one runs, its deadline
	next_attempt_at  timestamptz NOT NULL DEFAULT now(),
	-- the process whose attempt runs (NULL: none)
	claim_by         text,
	attempts         integer NOT NULL DEFAULT 0,
	-- attempts when it was queued (redelivered): the backoff counts
	-- from there, so a redelivery's first retry comes within 10 s
	attempts_queued  integer NOT NULL DEFAULT 0,
	last_attempt_at  timestamptz,
	last_status      integer,
	last_error       text,
	delivered_at     timestamptz,
	-- failed as endpoint_gone: the SHA-256 of the URL that answered 410
	-- (a process delivering to another URL queues it again)
	gone_url_hash    text
);
CREATE UNIQUE INDEX event_log_order_idx ON event_log (xid, seq);
CREATE INDEX event_log_due_idx ON event_log (next_attempt_at)
	WHERE delivery = 'pending';
CREATE INDEX event_log_at_idx ON event_log (at);
CREATE INDEX event_log_gone_idx ON event_log (queued_at)
	WHERE delivery = 'failed' AND last_error = 'endpoint_gone';
CREATE UNIQUE INDEX event_log_once_idx ON event_log (once_key)
	WHERE once_key IS NOT NULL;

-- Endpoints that answered 410 Gone, by the SHA-256 of their URL (a URL
-- may carry a receiver's token).  Deliveries to a URL listed here stop;
-- a new URL starts them again.
CREATE TABLE webhook_endpoints (
	url_hash  text PRIMARY KEY,
	gone_at   timestamptz NOT NULL DEFAULT now()
);
