-- Read models for the bot and the leaderboard.

CREATE VIEW top_traders_view AS
SELECT s.*
FROM trader_stats s
WHERE s.window_days = 30 AND s.eligible
ORDER BY s.dsr DESC NULLS LAST, s.net_pnl_usdc DESC;

CREATE VIEW active_copytraders_view AS
SELECT p.id AS profile_id, p.user_id, p.name, p.venue, p.equity_usdc,
       count(f.id) FILTER (WHERE f.status = 'active') AS active_follows
FROM copytrader_profiles p
LEFT JOIN leader_follows f ON f.profile_id = p.id
WHERE p.status = 'active'
GROUP BY p.id;

CREATE VIEW copy_performance_summary AS
SELECT c.profile_id,
       coalesce(c.leader_address, 'manual') AS leader_address,
       count(*) AS positions,
       count(*) FILTER (WHERE c.status = 'open') AS open_positions,
       coalesce(sum(c.realized_pnl_usdc) FILTER (WHERE c.status = 'closed'), 0)::bigint AS realized_pnl_usdc,
       coalesce(sum(c.open_fee_usdc + c.close_fee_usdc + c.funding_usdc), 0)::bigint AS fees_usdc
FROM copy_positions c
GROUP BY c.profile_id, coalesce(c.leader_address, 'manual');
