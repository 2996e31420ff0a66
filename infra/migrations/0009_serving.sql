-- Live prices for the market regime that do not come from fills (fills are in trade_events):
-- Pyth Hermes samples. Prices are exact numerics; ts is the oracle's publish time.
CREATE TABLE market_prices (
    pair   text NOT NULL,                 -- BTC/USD, as the pair catalogue spells it
    source text NOT NULL,                 -- pyth
    ts     timestamptz NOT NULL,
    price  numeric(38, 18) NOT NULL CHECK (price > 0),
    conf   numeric(38, 18),
    PRIMARY KEY (pair, source, ts)
);
CREATE INDEX market_prices_ts ON market_prices (ts);

-- Price history and the data version read trade_events by time across all traders.
CREATE INDEX trade_events_ts ON trade_events (ts);

-- The serving layer reads the latest regime per pair and the latest analytics per trader.
CREATE INDEX market_regime_data_latest ON market_regime_data (pair, ts DESC);
CREATE INDEX trader_analytics_latest ON trader_analytics (model_name, as_of DESC);
