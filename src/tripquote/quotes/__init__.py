"""The quotes feature: a pure domain (jsonbody, schemas, rules, lifecycle, pricing), its edges."""
