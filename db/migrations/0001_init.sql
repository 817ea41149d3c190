-- finxd initial schema: widget links, bank connections and their tokens,
-- and an append-only event log.  Tokens live in text columns with no length
-- limit and are stored encrypted (see server/crypto.c); ids are made by
-- finxd so a ciphertext can be bound to its row before the row exists.

CREATE TABLE links (
	id             uuid PRIMARY KEY,
	-- SHA-256 of the state: a database dump does not reveal live states.
	state_hash     bytea NOT NULL UNIQUE,
	user_id        text NOT NULL,
	api_key_id     text NOT NULL,
	return_url     text,
	-- 'connect' makes a new connection; 'reauth' renews connection_id.
	kind           text NOT NULL DEFAULT 'connect'
	               CHECK (kind IN ('connect', 'reauth')),
	flow_id        text NOT NULL,
	-- finX widget URL; it carries a one-time widget token, so encrypted.
	location       text NOT NULL,
	-- SHA-256 of the browser-binding cookie set at start_url.
	binding_hash   bytea,
	status         text NOT NULL DEFAULT 'pending'
	               CHECK (status IN ('pending', 'connected', 'cancelled',
	                                 'failed', 'expired')),
	reason         text,
	connection_id  uuid,
	created_at     timestamptz NOT NULL DEFAULT now(),
	expires_at     timestamptz NOT NULL,
	used_at        timestamptz,
	completed_at   timestamptz
);
CREATE INDEX links_user_idx ON links (user_id);

CREATE TABLE connections (
	id                   uuid PRIMARY KEY,
	user_id              text NOT NULL,
	status               text NOT NULL DEFAULT 'active'
	                     CHECK (status IN ('active', 'reauth_required',
	                                       'revoked')),
	status_reason        text,
	scope                text,
	access_token         text,
	refresh_token        text,
	access_expires_at    timestamptz,
	refresh_obtained_at  timestamptz,
	refresh_expires_at   timestamptz,
	consent_expires_at   timestamptz,
	connected_at         timestamptz NOT NULL DEFAULT now(),
	last_refresh_at      timestamptz,
	last_error           text,
	consecutive_failures integer NOT NULL DEFAULT 0,
	-- seconds the current access token was issued for (expires_in)
	access_lifetime_s    integer,
	-- when the refresher should next refresh: before the access token
	-- expires (margin) and at least every keep-alive period
	refresh_due_at       timestamptz,
	-- backoff after a failed refresh
	next_attempt_at      timestamptz,
	last_sync_at         timestamptz,
	revoked_at           timestamptz,
	created_at           timestamptz NOT NULL DEFAULT now(),
	updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connections_user_idx ON connections (user_id, created_at);
CREATE INDEX connections_due_idx ON connections (refresh_due_at)
	WHERE status = 'active' AND refresh_token IS NOT NULL;

-- Tokens of deleted connections still to be revoked at finX.  The
-- connection's own token columns are erased at once; a revocation that
-- failed is retried from here with backoff.
CREATE TABLE revocations (
	id              uuid PRIMARY KEY,
	connection_id   uuid NOT NULL REFERENCES connections (id),
	kind            text NOT NULL CHECK (kind IN ('refresh', 'access')),
	token           text NOT NULL,
	attempts        integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	last_error      text,
	created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revocations_due_idx ON revocations (next_attempt_at);

ALTER TABLE links ADD FOREIGN KEY (connection_id) REFERENCES connections (id);

-- Append-only: what happened to links and connections.  Never a token value.
CREATE TABLE events (
	id             bigserial PRIMARY KEY,
	at             timestamptz NOT NULL DEFAULT now(),
	kind           text NOT NULL,
	outcome        text NOT NULL,
	link_id        uuid,
	connection_id  uuid,
	detail         text
);
CREATE INDEX events_link_idx ON events (link_id);
CREATE INDEX events_connection_idx ON events (connection_id);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'events is append-only';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
	FOR EACH ROW EXECUTE FUNCTION events_append_only();
