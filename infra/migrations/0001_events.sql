-- Canonical trade events, the raw logs we could not decode, and the indexer's position.
-- Money is integer micro-USDC (bigint); prices and leverage are exact numerics, never float.

CREATE TABLE users (
    id               bigserial PRIMARY KEY,
    telegram_user_id bigint UNIQUE,
    username         text,
    is_admin         boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE trade_events (
    event_id             text PRIMARY KEY,          -- chain:<chain>:<tx>:<log_index> or api:<id>
    venue                text NOT NULL,             -- avantis, ...
    source               text NOT NULL,             -- chain, history_api, order_stream, simulator
    chain_id             integer,
    tx_hash              text,
    log_index            integer,
    block_number         bigint,
    block_hash           text,
    trader               text NOT NULL,             -- lower-case 0x address
    pair_index           integer NOT NULL,
    pair                 text,
    kind                 text NOT NULL CHECK (kind IN ('open', 'close', 'partial_close', 'liquidation',
                                                       'tp', 'sl', 'margin_update', 'tp_sl_update', 'cancel')),
    position_key         text NOT NULL,             -- trader:pair:index:open_ts (the index is reused)
    trade_index          integer NOT NULL,
    open_ts              bigint NOT NULL,
    side                 text CHECK (side IN ('long', 'short')),
    collateral_usdc      bigint,                    -- micro-USDC, collateral of the position after the event
    leverage             numeric(30, 10),
    price                numeric(38, 10),
    size_closed_usdc     bigint,                    -- micro-USDC collateral closed by this event
    open_fee_usdc        bigint NOT NULL DEFAULT 0,
    close_fee_usdc       bigint NOT NULL DEFAULT 0,
    rollover_fee_usdc    bigint NOT NULL DEFAULT 0,
    loss_protection_usdc bigint NOT NULL DEFAULT 0,
    usdc_sent            bigint,
    order_id             numeric(78, 0),
    ts                   timestamptz NOT NULL,
    raw                  jsonb,
    inserted_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX trade_events_chain_log ON trade_events (chain_id, tx_hash, log_index)
    WHERE tx_hash IS NOT NULL;
CREATE INDEX trade_events_trader_ts ON trade_events (trader, ts);
CREATE INDEX trade_events_block ON trade_events (chain_id, block_number);

-- Logs at a watched address whose topic0 no decoder knows (e.g. a new contract version):
-- kept verbatim so nothing is lost and they can be decoded once the ABI is known.
CREATE TABLE raw_chain_logs (
    chain_id     integer NOT NULL,
    tx_hash      text NOT NULL,
    log_index    integer NOT NULL,
    block_number bigint NOT NULL,
    block_hash   text NOT NULL,
    address      text NOT NULL,
    topic0       text,
    topics       text[] NOT NULL,
    data         text NOT NULL,
    reason       text NOT NULL,
    inserted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, tx_hash, log_index)
);

CREATE TABLE indexer_checkpoints (
    name            text PRIMARY KEY,               -- e.g. avantis:8453
    chain_id        integer NOT NULL,
    last_block      bigint NOT NULL,
    last_block_hash text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Hashes of recently indexed blocks, to notice a reorg and roll back what it orphaned.
CREATE TABLE indexer_blocks (
    chain_id     integer NOT NULL,
    block_number bigint NOT NULL,
    block_hash   text NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);
