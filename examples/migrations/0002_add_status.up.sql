-- Every statement here takes ACCESS EXCLUSIVE for a moment: never queue behind a long query.
SET lock_timeout = '2s';
-- Constants and STABLE functions as defaults do not rewrite the table (PostgreSQL 11+).
ALTER TABLE orders
    ADD COLUMN status text NOT NULL DEFAULT 'new',
    ADD COLUMN updated_at timestamptz DEFAULT now();
