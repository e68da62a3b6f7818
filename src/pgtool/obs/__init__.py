"""Observability: structured logging and Prometheus Pushgateway metrics."""
