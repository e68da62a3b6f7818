"""Audit evidence of restore drills: one JSON record per drill, hash-chained, optionally signed.

`log` stores and reads the records (one file each, never overwritten) and checks the chain, `signing`
loads Ed25519 keys (cryptography), `drills` builds a record from a drill's result and appends it,
`summary` is the auditor's report. See docs/evidence.md.
"""
