-- A new table: every lock and rewrite rule is moot on a table created in the same file.
CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint,
    legacy_code text,
    total       numeric(12, 2) NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_created_at ON orders (created_at);
INSERT INTO orders (customer_id, total) SELECT g % 10, g FROM generate_series(1, 100) AS g;
