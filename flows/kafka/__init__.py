"""Kafka mode: ``concierge run`` and what it stands on. Its source and sink (connectors),
settings and topics, the embedded broker, recovery snapshots, and the HTTP endpoint."""
