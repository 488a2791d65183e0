"""Stage 1, configuration: BiaPy's vocabulary as data (schema), loading and checking YAML (load),
and writing a configuration from a few answers (wizard)."""
