"""Concierge's wiring: the Bytewax dataflow and its edges (Kafka, files, broker, metrics, CLI)."""
