-- finxd: compatible_from 6
--
-- Whether `finxd rekey` has found every stored secret sealed: one row at
-- most, written by rekey when it finishes with no value left in plain text
-- and none it could not open.  With FINXD_ALLOW_PLAINTEXT_TOKENS=auto a
-- finxd then refuses plain-text rows (what a version before encryption
-- stored, or what anyone who can write to the database could plant)
-- instead of handing them out.  Binaries of schema 6 know nothing of it
-- and go on reading plain-text rows: they can run beside this schema
-- (rolling deploy), as they did before it.

CREATE TABLE rekey_state (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	-- when rekey last finished with every value sealed
	all_sealed_at timestamptz NOT NULL
);
