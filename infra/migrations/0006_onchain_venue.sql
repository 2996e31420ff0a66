-- The on-chain venue's own record: one signed transaction per intent, stored before it is
-- broadcast. client_ref is the primary key: the venue can never sign a second transaction for the
-- same copy, and a retry re-broadcasts these exact bytes (same nonce: it executes at most once).
CREATE TABLE onchain_txs (
    client_ref   text PRIMARY KEY,
    account      text NOT NULL,            -- the follower's wallet
    delegate     text NOT NULL,            -- our delegate that signed
    nonce        bigint NOT NULL,
    tx_hash      text NOT NULL UNIQUE,
    raw_tx       bytea NOT NULL,
    action       text NOT NULL,
    pair_index   integer NOT NULL,
    requested    bigint NOT NULL DEFAULT 0,  -- collateral asked (open) or to close, micro-USDC
    outcome      jsonb,                      -- the final VenueResult once the chain settled it
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (delegate, nonce)
);
CREATE INDEX onchain_txs_unsettled ON onchain_txs (delegate, nonce) WHERE outcome IS NULL;

-- The next nonce of each delegate key, taken FOR UPDATE so engines sharing a key never collide.
CREATE TABLE onchain_nonces (
    delegate   text PRIMARY KEY,
    next_nonce bigint NOT NULL
);

-- A close planned while the follower's copy of the open was still in flight: it waits with no
-- position_ref, and keeps the leader's numbers to size itself once the open has settled.
ALTER TABLE copy_intents
    ADD COLUMN leader_collateral_usdc bigint,
    ADD COLUMN leader_closed_usdc bigint;

-- Who closed a copy: the engine mirroring its leader, or the venue (found by reconciliation).
ALTER TABLE copy_positions ADD COLUMN closed_by text CHECK (closed_by IN ('leader', 'venue'));
