-- What we know about traders: rolling stats, model outputs, market regimes, model registry.

CREATE TABLE trader_stats (
    trader               text NOT NULL,
    window_days          integer NOT NULL,
    as_of                timestamptz NOT NULL,
    trades               integer NOT NULL,
    volume_usdc          bigint NOT NULL,           -- notional, micro-USDC
    net_pnl_usdc         bigint NOT NULL,
    collateral_usdc      bigint NOT NULL,
    win_rate             double precision,
    return_on_collateral double precision,
    max_drawdown_usdc    bigint NOT NULL,
    sharpe               double precision,
    sortino              double precision,
    profitable_days_share  double precision,
    profitable_weeks_share double precision,
    avg_hold_seconds     double precision,
    avg_leverage         double precision,
    max_leverage         double precision,
    pairs_traded         integer NOT NULL,
    long_share           double precision,
    last_activity        timestamptz,
    psr                  double precision,
    dsr                  double precision,
    min_trl_days         double precision,
    bootstrap_p          double precision,
    eligible             boolean NOT NULL DEFAULT false,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trader, window_days)
);
CREATE INDEX trader_stats_eligible ON trader_stats (window_days, eligible, dsr DESC);

-- Positions as the tracker reconstructs them (one row per position key).
CREATE TABLE trader_positions (
    position_key        text PRIMARY KEY,
    trader              text NOT NULL,
    pair_index          integer NOT NULL,
    side                text NOT NULL CHECK (side IN ('long', 'short')),
    open_collateral_usdc bigint NOT NULL,
    collateral_usdc     bigint NOT NULL,
    leverage            numeric(30, 10) NOT NULL,
    open_price          numeric(38, 10) NOT NULL,
    opened_at           timestamptz NOT NULL,
    closed_at           timestamptz,
    realized_pnl_usdc   bigint NOT NULL DEFAULT 0,
    fees_usdc           bigint NOT NULL DEFAULT 0,
    status              text NOT NULL CHECK (status IN ('open', 'closed', 'liquidated')),
    last_event_id       text NOT NULL
);
CREATE INDEX trader_positions_trader ON trader_positions (trader, status);

CREATE TABLE trader_analytics (
    trader        text NOT NULL,
    model_name    text NOT NULL,
    model_version text NOT NULL,
    as_of         timestamptz NOT NULL,
    skill_score   double precision,
    archetype     text,
    anomaly_score double precision,
    features      jsonb,
    PRIMARY KEY (trader, model_name, as_of)
);

CREATE TABLE market_regime_data (
    pair          text NOT NULL,
    ts            timestamptz NOT NULL,
    model_version text NOT NULL,
    regime        text NOT NULL,
    probabilities jsonb,
    features      jsonb,
    PRIMARY KEY (pair, ts, model_version)
);

CREATE TABLE ai_model_metadata (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL,
    version          text NOT NULL,
    bento_tag        text,
    trained_at       timestamptz NOT NULL DEFAULT now(),
    train_start      timestamptz,
    train_end        timestamptz,
    metrics          jsonb NOT NULL DEFAULT '{}',
    baseline_metrics jsonb NOT NULL DEFAULT '{}',
    beats_baseline   boolean NOT NULL DEFAULT false,
    is_active        boolean NOT NULL DEFAULT false,
    UNIQUE (name, version)
);
