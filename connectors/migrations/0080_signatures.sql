-- Entries keep the proposal's signature, so `gridgov verify` can re-authenticate every entry with the
-- key in force at its seq and re-decide it with the law (entry format 3 hashes it). Checkpoints carry
-- the validator's Ed25519 signature of their hash: an unkeyed SHA-256 alone is no defence against a
-- writer who recomputes it.
ALTER TABLE ledger ADD COLUMN sig text NOT NULL DEFAULT '';
ALTER TABLE ledger ALTER COLUMN sig DROP DEFAULT;
ALTER TABLE checkpoints ADD COLUMN signature bytea;
