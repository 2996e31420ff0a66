-- The Veranta venue's own record: one order per intent, written before the SDK is called, with
-- the relayer's trackingId as soon as the stream announces it and the final outcome once known.
CREATE TABLE veranta_orders (
    client_ref   text PRIMARY KEY,
    account      text NOT NULL,          -- the follower's wallet, lowercase
    action       text NOT NULL,
    pair_index   integer NOT NULL,
    side         text,
    requested    bigint NOT NULL DEFAULT 0,  -- collateral asked (open) or to close, micro-USDC
    position_ref text,                       -- pair:index of a close or TP/SL update
    tp           numeric(38, 10),
    sl           numeric(38, 10),
    tracking_id  text,
    outcome      jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
