"""Real-database benchmarks of query rewrites."""
