-- finxd: compatible_from 9
--
-- Pulls without a transaction held across finX, and the transaction change
-- feed (SPEC "Lists, idempotency, changes"; server/data.c).
--
-- A pull is claimed by one committed UPDATE: claim_by (a UUID of that
-- claim, not of the process: a process may claim the same pull again
-- after its own claim ran out) and claim_until (its deadline, renewed
-- while the pull fetches).  The claim also moves next_pull_at to the
-- deadline, so a claimed row leaves the head of pulls_due_idx and a
-- pull whose process died is due again once the deadline passes.  The
-- pull's data is written in one short transaction that locks the row
-- and checks that claim_by is still its own (compare-and-set).
--
-- Schema-9 and -10 binaries run beside this one: their claim locks the
-- row FOR UPDATE SKIP LOCKED where next_pull_at <= now(), so they skip a
-- row claimed here (next_pull_at is the deadline) and this schema's
-- claims skip a row they hold locked.  They write no change rows: during
-- a rolling deploy, changes their pulls store are missing from the feed
-- (and have no transactions.updated event), as their other events are.

ALTER TABLE pulls
	ADD COLUMN claim_by    text,
	ADD COLUMN claim_until timestamptz,
	-- the last seq of this connection's transaction_changes, bumped in
	-- the pull's write transaction under the pulls row's lock
	ADD COLUMN change_seq  bigint NOT NULL DEFAULT 0;

-- One row per change a pull stored, per connection in commit order: seq
-- is assigned while the pull holds its pulls row locked, so a reader
-- that sees seq n sees every seq below it.  kind 'removed' names a
-- transaction that no longer exists (its id stays unique: ids come from
-- an identity and are never reused).
CREATE TABLE transaction_changes (
	connection_id   uuid NOT NULL,
	seq             bigint NOT NULL,
	transaction_id  bigint NOT NULL,
	kind            text NOT NULL
		CHECK (kind IN ('added', 'modified', 'removed')),
	at              timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (connection_id, seq)
);
