SET lock_timeout = '2s';
-- migration-lint: ignore=MIG005 reason="legacy_code was never read; the app stopped writing it in release 41"
ALTER TABLE orders DROP COLUMN legacy_code;
