-- Financial data pulled from finX: accounts, balance history,
-- transactions, and the pull/sync bookkeeping.  finX ids are opaque text;
-- money is numeric, never a float; every timestamp carries a time zone.

CREATE TABLE accounts (
	id              uuid PRIMARY KEY,
	connection_id   uuid NOT NULL REFERENCES connections (id),
	user_id         text NOT NULL,
	finx_account_id text NOT NULL,
	access_id       text,
	iban            text,
	bic             text,
	name            text,
	type            text,
	currency        text,
	owner           text,
	bank_name       text,
	account_number  text,
	raw             jsonb NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now(),
	UNIQUE (connection_id, finx_account_id)
);
CREATE INDEX accounts_user_idx ON accounts (user_id);

-- History: a row whenever finX reports a different amount or date.
CREATE TABLE balances (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id    uuid NOT NULL REFERENCES accounts (id),
	amount        numeric NOT NULL,
	currency      text,
	balance_date  timestamptz,
	fetched_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX balances_account_idx ON balances (account_id, id DESC);

CREATE TABLE transactions (
	-- our id: the keyset tie-breaker, exposed as a string
	id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	connection_id       uuid NOT NULL REFERENCES connections (id),
	account_id          uuid NOT NULL REFERENCES accounts (id),
	finx_transaction_id text NOT NULL,
	amount              numeric NOT NULL,
	currency            text NOT NULL,
	booking_date        timestamptz,
	value_date          timestamptz,
	-- the keyset sort key: booking date, else value date, else first seen
	sort_date           timestamptz NOT NULL,
	booked              boolean NOT NULL,
	counterparty_name   text,
	counterparty_iban   text,
	counterparty_bic    text,
	purpose             text,
	type                text,
	booking_text        text,
	raw                 jsonb NOT NULL,
	created_at          timestamptz NOT NULL DEFAULT now(),
	updated_at          timestamptz NOT NULL DEFAULT now(),
	UNIQUE (connection_id, finx_transaction_id)
);
CREATE INDEX transactions_keyset_idx
	ON transactions (account_id, sort_date DESC, id DESC);
CREATE INDEX transactions_conn_idx ON transactions (connection_id);

-- One row per connection: when it is next pulled.  Locked (SKIP LOCKED)
-- for the whole pull, so one pull per connection runs at a time, and
-- kept apart from connections so a pull never blocks a token refresh.
CREATE TABLE pulls (
	connection_id   uuid PRIMARY KEY REFERENCES connections (id),
	next_pull_at    timestamptz NOT NULL DEFAULT now(),
	last_pull_at    timestamptz,
	last_error      text,
	failures        integer NOT NULL DEFAULT 0,
	-- the next pull follows the user's own action (a new connection or a
	-- completed manual sync) and does not count as unattended
	attended        boolean NOT NULL DEFAULT false,
	-- starts of unattended pulls in the last 24 h (PSD2: at most 4)
	recent          timestamptz[] NOT NULL DEFAULT '{}'
);
CREATE INDEX pulls_due_idx ON pulls (next_pull_at);

CREATE TABLE syncs (
	id             uuid PRIMARY KEY,
	connection_id  uuid NOT NULL REFERENCES connections (id),
	access_id      text NOT NULL,
	finx_sync_id   text NOT NULL,
	status         text NOT NULL,
	error          jsonb,
	created_at     timestamptz NOT NULL DEFAULT now(),
	started_at     timestamptz,
	ended_at       timestamptz,
	updated_at     timestamptz NOT NULL DEFAULT now(),
	next_poll_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX syncs_open_idx ON syncs (next_poll_at)
	WHERE status NOT IN ('COMPLETED', 'FAILED', 'ERROR', 'CANCELLED');
CREATE INDEX syncs_conn_idx ON syncs (connection_id, created_at DESC);

-- Existing connections get their first pull now.
INSERT INTO pulls (connection_id)
	SELECT id FROM connections WHERE status = 'active';
