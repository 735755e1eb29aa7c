"""Scoring groupings: AMI/ARI metrics, per-step scores, collapse diagnostics, ``evaluate``."""
