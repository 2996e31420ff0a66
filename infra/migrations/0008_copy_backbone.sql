-- Notifications are data: a kind, its fields (payload) and a level; their reader renders them.
ALTER TABLE notifications DROP COLUMN text;
ALTER TABLE notifications ADD COLUMN level text NOT NULL DEFAULT 'info'
    CHECK (level IN ('info', 'fill', 'warning', 'critical'));
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC);

-- An intent that cannot be worked (its values break the venue or the books) ends 'failed' with
-- its error after a bounded number of attempts, instead of blocking others or being retried forever.
ALTER TABLE copy_intents DROP CONSTRAINT copy_intents_state_check;
ALTER TABLE copy_intents ADD CONSTRAINT copy_intents_state_check
    CHECK (state IN ('planned', 'refused', 'sent', 'filled', 'rejected', 'unknown', 'resolved', 'failed'));
ALTER TABLE copy_intents ADD COLUMN attempts integer NOT NULL DEFAULT 0;

-- One open per follower and leader position, whichever source announced it. It is also the
-- arbiter between an open arriving late and a close that stopped waiting for it.
CREATE UNIQUE INDEX copy_intents_one_open ON copy_intents (profile_id, leader_position_key)
    WHERE action = 'open';
-- Follow-ups still in flight by leader position: what a close waits for, and who waits.
CREATE INDEX copy_intents_position_in_flight ON copy_intents (leader_position_key)
    WHERE state IN ('planned', 'sent', 'unknown');
-- The day's realized PnL for the daily-loss limit.
CREATE INDEX copy_intents_realized ON copy_intents (profile_id, updated_at)
    WHERE action IN ('close', 'partial_close') AND state IN ('filled', 'resolved');
-- Closes find the copy they act on by its venue reference.
CREATE INDEX copy_positions_open_ref ON copy_positions (profile_id, venue_position_ref) WHERE status = 'open';

-- Values that cannot be represented are refused where they enter (the service validates first;
-- these are the last line). NOT VALID: rows stored before are left for the engine, which fails
-- such a follow's own intents with a reason and copies everyone else.
ALTER TABLE copy_configurations
    ADD CONSTRAINT copy_configurations_fixed_sane
        CHECK (fixed_collateral_usdc > 0 AND fixed_collateral_usdc <= 10000000000000) NOT VALID,
    ADD CONSTRAINT copy_configurations_equity_pct_sane CHECK (equity_pct > 0 AND equity_pct <= 100) NOT VALID,
    ADD CONSTRAINT copy_configurations_multiplier_sane CHECK (multiplier > 0 AND multiplier <= 100) NOT VALID,
    ADD CONSTRAINT copy_configurations_cap_sane
        CHECK (per_trade_cap_usdc > 0 AND per_trade_cap_usdc <= 10000000000000) NOT VALID,
    ADD CONSTRAINT copy_configurations_leverage_cap_sane CHECK (leverage_cap >= 1 AND leverage_cap <= 1000) NOT VALID,
    ADD CONSTRAINT copy_configurations_max_position_sane
        CHECK (max_position_usdc > 0 AND max_position_usdc <= 1000000000000000) NOT VALID,
    ADD CONSTRAINT copy_configurations_slippage_sane CHECK (slippage_bps <= 10000) NOT VALID;

ALTER TABLE copytrader_profiles
    ADD CONSTRAINT copytrader_profiles_equity_sane
        CHECK (equity_usdc >= 0 AND equity_usdc <= 1000000000000000) NOT VALID,
    ADD CONSTRAINT copytrader_profiles_daily_loss_sane
        CHECK (daily_loss_limit_usdc > 0 AND daily_loss_limit_usdc <= 1000000000000000) NOT VALID,
    ADD CONSTRAINT copytrader_profiles_drawdown_sane CHECK (max_drawdown_pct > 0 AND max_drawdown_pct <= 100) NOT VALID,
    ADD CONSTRAINT copytrader_profiles_exposure_sane
        CHECK (max_total_exposure_usdc > 0 AND max_total_exposure_usdc <= 1000000000000000) NOT VALID,
    ADD CONSTRAINT copytrader_profiles_wallet_format CHECK (wallet_address ~ '^0x[0-9a-f]{40}$') NOT VALID,
    ADD CONSTRAINT copytrader_profiles_name_sane CHECK (length(name) BETWEEN 1 AND 64) NOT VALID;

ALTER TABLE leader_follows
    ADD CONSTRAINT leader_follows_leader_format CHECK (leader_address ~ '^0x[0-9a-f]{40}$') NOT VALID;

-- A deleted profile leaves every listing and frees its name; its history stays.
ALTER TABLE copytrader_profiles ADD COLUMN deleted_at timestamptz;
ALTER TABLE copytrader_profiles DROP CONSTRAINT copytrader_profiles_user_id_name_key;
CREATE UNIQUE INDEX copytrader_profiles_live_name ON copytrader_profiles (user_id, name) WHERE deleted_at IS NULL;
