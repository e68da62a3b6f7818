-- REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index on plain columns.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS mv_daily_revenue_day_idx ON mv_daily_revenue (day);
