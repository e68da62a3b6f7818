-- CONCURRENTLY cannot run in a transaction block: alone in its file.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id ON orders (customer_id);
