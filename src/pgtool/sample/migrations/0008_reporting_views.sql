-- Reporting views, refreshed by `pgtool refresh-mv` (CONCURRENTLY, thanks to the unique indexes created in
-- the next migrations). Created WITH NO DATA so the migration is instant; the first refresh populates them.
-- A sale is an order that was paid (paid, shipped or delivered). Days are UTC days.
CREATE MATERIALIZED VIEW mv_daily_revenue AS
SELECT (o.created_at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS orders,
       sum(o.total)::numeric(14, 2) AS revenue
FROM orders o
WHERE o.status IN ('paid', 'shipped', 'delivered')
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW mv_product_performance AS
SELECT p.id AS product_id,
       p.sku,
       p.name,
       c.name AS category,
       p.stock,
       coalesce(sum(s.quantity), 0)::bigint AS units_sold,
       coalesce(sum(s.quantity) FILTER (WHERE s.created_at >= now() - interval '30 days'), 0)::bigint
           AS units_sold_30d,
       coalesce(sum(s.quantity * s.unit_price), 0)::numeric(14, 2) AS revenue,
       count(DISTINCT s.order_id) AS orders
FROM products p
JOIN categories c ON c.id = p.category_id
LEFT JOIN (
    SELECT oi.product_id, oi.order_id, oi.quantity, oi.unit_price, o.created_at
    FROM order_items oi
    JOIN orders o ON o.id = oi.order_id AND o.created_at = oi.order_created_at
    WHERE o.status IN ('paid', 'shipped', 'delivered')
) s ON s.product_id = p.id
GROUP BY p.id, c.name
WITH NO DATA;

CREATE MATERIALIZED VIEW mv_customer_summary AS
SELECT u.id AS user_id,
       u.email,
       u.full_name,
       u.country,
       count(o.id) AS orders,
       coalesce(sum(o.total), 0)::numeric(14, 2) AS total_spent,
       min(o.created_at) AS first_order_at,
       max(o.created_at) AS last_order_at
FROM users u
LEFT JOIN orders o ON o.user_id = u.id AND o.status IN ('paid', 'shipped', 'delivered')
GROUP BY u.id
WITH NO DATA;
