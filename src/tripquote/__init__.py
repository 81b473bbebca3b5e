"""tripquote: travel quotes saved completely and exactly once, or refused with a precise error."""

__version__ = "0.1.0"
