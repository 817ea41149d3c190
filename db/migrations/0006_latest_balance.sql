-- finxd: compatible_from 5
--
-- The latest balance of each account on its own row, so that a read of
-- accounts is one index scan instead of a subquery on balances per
-- account.  A trigger on balances keeps the columns, whoever inserts:
-- binaries of schema 5 still write balances and read them with their
-- LATERAL subquery, and their inserts keep these columns right, so they
-- run beside this schema (rolling deploy).  balances stays the history.
--
-- Lock order as a pull's (accounts, then balances), so a pull of an old
-- binary running while this migrates waits for it or makes it wait, and
-- never deadlocks with it.

ALTER TABLE accounts
	-- balances.id of the latest balance: the row the columns copy.
	-- Identity ids grow in insert order, and the inserts of one account
	-- are serialised by its row lock (a pull upserts the account first).
	ADD COLUMN balance_id bigint,
	ADD COLUMN balance_amount numeric,
	ADD COLUMN balance_currency text,
	ADD COLUMN balance_date timestamptz,
	ADD COLUMN balance_fetched_at timestamptz;

CREATE FUNCTION finxd_latest_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE accounts SET balance_id = NEW.id,
		balance_amount = NEW.amount,
		balance_currency = NEW.currency,
		balance_date = NEW.balance_date,
		balance_fetched_at = NEW.fetched_at
	WHERE id = NEW.account_id AND
		(balance_id IS NULL OR balance_id < NEW.id);
	RETURN NULL;
END $$;

CREATE TRIGGER balances_latest
	AFTER INSERT ON balances
	FOR EACH ROW
	EXECUTE FUNCTION finxd_latest_balance();

-- After the trigger exists: its lock waited for every transaction that
-- was inserting balances, so this sees them all and later ones fire it.
UPDATE accounts a SET balance_id = b.id, balance_amount = b.amount,
	balance_currency = b.currency, balance_date = b.balance_date,
	balance_fetched_at = b.fetched_at
FROM (SELECT DISTINCT ON (account_id) id, account_id, amount, currency,
		balance_date, fetched_at
	FROM balances ORDER BY account_id, id DESC) b
WHERE b.account_id = a.id;
