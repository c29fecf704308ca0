-- open_orders: the order book's resting bids and asks, a cache of the law's state like open_offers
-- (rebuilt by replaying the ledger; `gridgov rehydrate` compares it). reserved is what the order
-- still holds in system:escrow: credits for a bid, the resource for an ask.
CREATE TABLE open_orders (
    order_id        text PRIMARY KEY,
    agent           text   NOT NULL,
    account         text   NOT NULL,
    side            text   NOT NULL CHECK (side IN ('bid', 'ask')),
    resource        text   NOT NULL,
    quantity        bigint NOT NULL CHECK (quantity > 0),
    price           bigint NOT NULL CHECK (price >= 0),
    open_until_tick bigint NOT NULL,
    arrival         bigint NOT NULL,
    reserved        bigint NOT NULL CHECK (reserved >= 0),
    value_filled    bigint NOT NULL CHECK (value_filled >= 0)
);

CREATE INDEX open_orders_book ON open_orders (resource, side, price, arrival);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'grid_validator') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON open_orders TO grid_validator;
    END IF;
END $$;
