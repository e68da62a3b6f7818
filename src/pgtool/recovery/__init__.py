"""Recovery: `pgtool recover` (point-in-time recovery and standbys), the archive's end and
continuity, verified recovery points.
"""
