"""Lifecycle events (the transactional outbox) and their signed webhooks (Standard Webhooks)."""
