"""PostgreSQL plumbing: connections, the external-binary wrapper, throwaway local clusters."""
