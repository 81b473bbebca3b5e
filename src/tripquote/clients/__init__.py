"""The agent's own clients (the travellers a quote is for)."""
