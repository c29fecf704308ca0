-- Final decisions: a proposal's identity is (agent, nonce), and a refused proposal that was
-- authenticated uses its nonce up too, so the law keeps one number per agent instead of every id.

-- The ledger's uniqueness follows the law's identity. proposal_id is the producer's label: indexed
-- for lookups, no longer unique (two agents may choose the same label; neither can take the other's).
ALTER TABLE ledger ADD COLUMN nonce bigint;
ALTER TABLE ledger DROP CONSTRAINT ledger_proposal_id_key;
CREATE UNIQUE INDEX ledger_agent_nonce ON ledger (agent, nonce);
CREATE INDEX ledger_proposal_id ON ledger (proposal_id);

-- The nonce a refusal used up (NULL: the message was not authenticated and used up nothing).
ALTER TABLE rejections ADD COLUMN nonce bigint;
CREATE INDEX rejections_proposal_id ON rejections (proposal_id);

-- A checkpoint is the state after every decision below next_offset (refusals change the state too:
-- they use up nonces), so a fold resumes entries after `seq` and refusals from next_offset.
ALTER TABLE checkpoints ADD COLUMN next_offset bigint;
CREATE INDEX rejections_agent_nonce ON rejections (agent, nonce) WHERE nonce IS NOT NULL;

-- The seq of the entry that opened the breaker: a breaker_resume must name it.
ALTER TABLE grid_status ADD COLUMN breaker_trip_seq bigint NOT NULL DEFAULT -1;
