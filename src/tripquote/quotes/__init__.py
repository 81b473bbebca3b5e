"""The quotes feature: a pure domain (schemas, rules, lifecycle, pricing), its edges."""
