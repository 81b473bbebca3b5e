"""The client's side of a quote: the proposal as sent, its private link, page, PDF, answer."""
