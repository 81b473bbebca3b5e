"""Agencies, agents and bearer-token authentication."""
