"""The Concierge domain: pure logic, no Bytewax, no Kafka, no clock, no I/O."""
