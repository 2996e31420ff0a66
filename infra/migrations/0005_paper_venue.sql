-- The paper venue's own books, apart from our journal: what it was asked to do and what it holds.
-- client_ref (our intent id) is deliberately NOT unique here: the venue records every request it
-- gets, so a duplicate send by the engine would show up instead of being hidden by the venue.

CREATE TABLE paper_orders (
    seq             bigserial PRIMARY KEY,
    client_ref      text NOT NULL,
    account         text NOT NULL,
    action          text NOT NULL,
    pair_index      integer NOT NULL,
    side            text,
    collateral_usdc bigint NOT NULL DEFAULT 0,   -- opened, or closed
    leverage        numeric(30, 10),
    price           numeric(38, 10),
    fee_usdc        bigint NOT NULL DEFAULT 0,
    usdc_sent       bigint,
    pnl_usdc        bigint,
    position_ref    text,
    status          text NOT NULL CHECK (status IN ('filled', 'rejected')),
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX paper_orders_ref ON paper_orders (client_ref);

CREATE TABLE paper_positions (
    position_ref    text PRIMARY KEY,
    account         text NOT NULL,
    pair_index      integer NOT NULL,
    side            text NOT NULL,
    collateral_usdc bigint NOT NULL,
    leverage        numeric(30, 10) NOT NULL,
    entry_price     numeric(38, 10) NOT NULL,
    tp              numeric(38, 10),
    sl              numeric(38, 10),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed'))
);
CREATE INDEX paper_positions_account ON paper_positions (account) WHERE status = 'open';

-- What an intent needs to be sent again after a crash, exactly as first planned.
ALTER TABLE copy_intents
    ADD COLUMN position_ref text,            -- the venue position a close or TP/SL update acts on
    ADD COLUMN leader_position_key text,
    ADD COLUMN tp numeric(38, 10),
    ADD COLUMN sl numeric(38, 10),
    ADD COLUMN fee_usdc bigint,
    ADD COLUMN pnl_usdc bigint;
