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

-- The analyzer's latest answer per trader (what `vanta scheduler` last wrote): the AI score and
-- what stands beside it. At one as-of time a registered model's row wins over the skill-only one.
CREATE VIEW latest_trader_analytics AS
SELECT DISTINCT ON (trader)
       trader, model_name, model_version, as_of, skill_score AS ai_score, archetype, anomaly_score,
       (features->>'p_win_7d')::float8 AS p_win_7d,
       (features->>'rank')::integer AS ai_rank,
       -- named flags (loss hiding, wash trading...): a flagged trader never tops a ranking
       coalesce(jsonb_array_length(features->'flags'), 0) > 0 AS flagged,
       coalesce((features->>'anomaly')::boolean, false) AS anomaly,
       features->'flags' AS flags
FROM trader_analytics
ORDER BY trader, as_of DESC, (model_name = 'skill_stats_only');

-- Eligible leaders ranked by the AI score (flagged ones last), PSR/DSR/MinTRL and the stats beside
-- it; traders the analyzer has not scored follow, by DSR as before.
DROP VIEW top_traders_view;
CREATE VIEW top_traders_view AS
SELECT s.*, a.ai_score, a.p_win_7d, a.archetype, coalesce(a.flagged, false) AS flagged, a.flags,
       a.model_name || ':' || a.model_version AS ai_model, a.as_of AS ai_as_of
FROM trader_stats s
LEFT JOIN latest_trader_analytics a ON a.trader = s.trader
WHERE s.window_days = 30 AND s.eligible
ORDER BY coalesce(a.flagged, false), a.ai_score DESC NULLS LAST, s.dsr DESC NULLS LAST, s.net_pnl_usdc DESC;
