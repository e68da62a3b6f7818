"""Backups: logical dumps, base backups, retention, manifests, restore drills and recovery."""
