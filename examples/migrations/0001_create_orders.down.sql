-- Down migrations are not linted when a directory is given.
DROP TABLE orders;
