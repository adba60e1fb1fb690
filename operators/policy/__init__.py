"""The policy: read (YAML 1.2, limits, schema), checked (names that must point at something,
likely typos) and compiled once into immutable lookup tables for the hot path."""
