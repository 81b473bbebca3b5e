"""Correlation IDs, JSON logs, metrics, operation records and alerts."""
