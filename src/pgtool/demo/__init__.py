"""`pgtool demo`: pgtool's lifecycle on a throwaway PostgreSQL."""
