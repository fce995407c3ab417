"""Stage 1, the front end: reading arch.yaml (YAML, the spec, expressions, the JSON Schema)."""
