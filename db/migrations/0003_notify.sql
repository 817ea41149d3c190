-- Read-cache invalidation across finxd processes.  Each process caches
-- rendered answers of the account and transaction reads and LISTENs on
-- channel finxd_data; the payload is the user_id whose reads changed
-- (an empty payload means everything).  Notifications go out at commit,
-- and identical payloads of one transaction collapse into one.
--
-- Pulls notify themselves (server/data.c, right before COMMIT).  Of
-- connections, the reads show only whether a connection is revoked (its
-- accounts and transactions drop out of the per-user listings), so this
-- trigger fires on status changes and deletions.  It stays off token
-- updates, which the refresher makes all day long.

CREATE FUNCTION finxd_notify_connection() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		PERFORM pg_notify('finxd_data', OLD.user_id);
		RETURN OLD;
	END IF;
	PERFORM pg_notify('finxd_data', NEW.user_id);
	IF NEW.user_id IS DISTINCT FROM OLD.user_id THEN
		PERFORM pg_notify('finxd_data', OLD.user_id);
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER connections_notify_update
	AFTER UPDATE OF status, user_id ON connections
	FOR EACH ROW
	WHEN (OLD.status IS DISTINCT FROM NEW.status OR
	      OLD.user_id IS DISTINCT FROM NEW.user_id)
	EXECUTE FUNCTION finxd_notify_connection();

CREATE TRIGGER connections_notify_delete
	AFTER DELETE ON connections
	FOR EACH ROW
	EXECUTE FUNCTION finxd_notify_connection();
