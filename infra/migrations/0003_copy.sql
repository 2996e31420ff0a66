-- Copy trading: who follows whom under which limits, the execution journal, the results.

CREATE TABLE copytrader_profiles (
    id                      bigserial PRIMARY KEY,
    user_id                 bigint NOT NULL REFERENCES users (id),
    name                    text NOT NULL,
    venue                   text NOT NULL CHECK (venue IN ('paper', 'onchain', 'veranta')),
    wallet_address          text,
    delegate_address        text,
    encrypted_key           bytea,                  -- Fernet/AES-GCM ciphertext, never logged
    equity_usdc             bigint,                 -- micro-USDC; NULL means unknown: sizing refuses
    peak_equity_usdc        bigint,
    daily_loss_limit_usdc   bigint,
    max_drawdown_pct        numeric(7, 4),
    max_total_exposure_usdc bigint,
    status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'stopped')),
    pause_reason            text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

CREATE TABLE copy_configurations (
    id                    bigserial PRIMARY KEY,
    profile_id            bigint NOT NULL REFERENCES copytrader_profiles (id),
    sizing_mode           text NOT NULL CHECK (sizing_mode IN ('fixed', 'equity_pct', 'proportional', 'multiplier')),
    fixed_collateral_usdc bigint,
    equity_pct            numeric(9, 6),
    multiplier            numeric(12, 6),
    per_trade_cap_usdc    bigint,
    leverage_cap          numeric(30, 10),
    max_position_usdc     bigint,
    pair_allow            integer[],
    pair_block            integer[] NOT NULL DEFAULT '{}',
    side_filter           text NOT NULL DEFAULT 'both' CHECK (side_filter IN ('both', 'long', 'short')),
    reverse               boolean NOT NULL DEFAULT false,
    copy_tp_sl            boolean NOT NULL DEFAULT true,
    own_tp_pct            numeric(9, 4),
    own_sl_pct            numeric(9, 4),
    copy_existing         boolean NOT NULL DEFAULT false,
    slippage_bps          integer NOT NULL DEFAULT 50 CHECK (slippage_bps >= 0),
    regime_guard          boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leader_follows (
    id             bigserial PRIMARY KEY,
    profile_id     bigint NOT NULL REFERENCES copytrader_profiles (id),
    config_id      bigint NOT NULL REFERENCES copy_configurations (id),
    leader_address text NOT NULL,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'stopped')),
    followed_at    timestamptz NOT NULL DEFAULT now(),
    unfollowed_at  timestamptz
);
CREATE UNIQUE INDEX leader_follows_one_live ON leader_follows (profile_id, leader_address)
    WHERE status <> 'stopped';
CREATE INDEX leader_follows_leader ON leader_follows (leader_address) WHERE status = 'active';

-- The execution journal. intent_id = hash(follower, leader event id, action) and is written
-- before anything is sent: the primary key makes a second send of one intent impossible.
CREATE TABLE copy_intents (
    intent_id        text PRIMARY KEY,
    profile_id       bigint NOT NULL REFERENCES copytrader_profiles (id),
    follow_id        bigint REFERENCES leader_follows (id),
    leader_address   text NOT NULL,
    leader_event_id  text NOT NULL,
    action           text NOT NULL CHECK (action IN ('open', 'close', 'partial_close', 'update_tp_sl')),
    state            text NOT NULL CHECK (state IN ('planned', 'refused', 'sent', 'filled', 'rejected',
                                                    'unknown', 'resolved')),
    refusal_reason   text,
    pair_index       integer,
    side             text CHECK (side IN ('long', 'short')),
    collateral_usdc  bigint,
    leverage         numeric(30, 10),
    requested_price  numeric(38, 10),
    fill_price       numeric(38, 10),
    venue            text NOT NULL,
    venue_order_ref  text,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (profile_id, leader_event_id, action)
);
CREATE INDEX copy_intents_open_states ON copy_intents (state) WHERE state IN ('planned', 'sent', 'unknown');

CREATE TABLE copy_positions (
    id                   bigserial PRIMARY KEY,
    profile_id           bigint NOT NULL REFERENCES copytrader_profiles (id),
    follow_id            bigint REFERENCES leader_follows (id),   -- NULL for a manual trade
    leader_address       text,
    leader_position_key  text,
    venue_position_ref   text,
    pair_index           integer NOT NULL,
    side                 text NOT NULL CHECK (side IN ('long', 'short')),
    collateral_usdc      bigint NOT NULL,
    leverage             numeric(30, 10) NOT NULL,
    entry_price          numeric(38, 10) NOT NULL,
    leader_entry_price   numeric(38, 10),
    exit_price           numeric(38, 10),
    leader_exit_price    numeric(38, 10),
    open_fee_usdc        bigint NOT NULL DEFAULT 0,
    close_fee_usdc       bigint NOT NULL DEFAULT 0,
    funding_usdc         bigint NOT NULL DEFAULT 0,
    realized_pnl_usdc    bigint NOT NULL DEFAULT 0,
    status               text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    is_manual            boolean NOT NULL DEFAULT false,
    opened_at            timestamptz NOT NULL DEFAULT now(),
    closed_at            timestamptz,
    UNIQUE (profile_id, leader_position_key)
);

CREATE TABLE copy_performance_attribution (
    profile_id          bigint NOT NULL REFERENCES copytrader_profiles (id),
    leader_address      text NOT NULL,              -- 'manual' for the follower's own trades
    period_start        date NOT NULL,
    period_end          date NOT NULL,
    copied_trades       integer NOT NULL DEFAULT 0,
    realized_pnl_usdc   bigint NOT NULL DEFAULT 0,
    fees_usdc           bigint NOT NULL DEFAULT 0,
    slippage_cost_usdc  bigint NOT NULL DEFAULT 0,  -- follower fill versus leader fill
    PRIMARY KEY (profile_id, leader_address, period_start)
);

-- Outbox: whatever the bot must tell a user, written in the same transaction as the cause.
CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    kind        text NOT NULL,
    dedupe_key  text UNIQUE,
    text        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX notifications_pending ON notifications (created_at) WHERE status = 'pending';

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);
