-- finxd: compatible_from 4
--
-- Refresh leases (server/REFRESH.md).  A refresh no longer holds a row
-- lock across the finX call: it commits a lease first (who, until when,
-- which token generation it presents), calls finX with no transaction
-- open, and stores the rotation with a compare-and-set on
-- token_generation.  Binaries of schema 3 take row locks instead and
-- ignore leases, so this one upgrade replaces every process at once
-- (README, "Upgrading"); compatible_from 4 says so to every binary.

-- Which migrations a binary may serve beside: set by `finxd migrate`
-- from each file's "finxd: compatible_from N" line.
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS compatible_from integer;

ALTER TABLE connections
	-- bumped by every store of tokens; the compare-and-set key.  Never
	-- the ciphertext: that changes with every seal and with `finxd rekey`.
	ADD COLUMN token_generation bigint NOT NULL DEFAULT 1,
	-- the refresh lease: the process (finxd_processes.id) that presents
	-- generation lease_generation's refresh token until lease_until
	ADD COLUMN lease_holder uuid,
	ADD COLUMN lease_until timestamptz,
	ADD COLUMN lease_generation bigint,
	-- the last GET .../token: connections read recently are refreshed
	-- ahead of expiry, idle ones only for keep-alive and expiry
	ADD COLUMN last_handout_at timestamptz;

-- One row per finxd serve process, kept fresh by its heartbeat.  A lease
-- is taken over only from a holder whose heartbeat has gone stale.
CREATE TABLE finxd_processes (
	id            uuid PRIMARY KEY,
	host          text NOT NULL,
	pid           integer NOT NULL,
	version       text NOT NULL,
	started_at    timestamptz NOT NULL DEFAULT now(),
	heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
