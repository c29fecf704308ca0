-- Negotiations (alternating offers): an offer addressed to one agent carries whose turn it is, the
-- buyer's account once it countered, and the counters so far. NULL/0 on an offer to anyone.
ALTER TABLE open_offers
    ADD COLUMN to_agent      text,
    ADD COLUMN turn          text,
    ADD COLUMN buyer_account text,
    ADD COLUMN rounds        integer NOT NULL DEFAULT 0;
