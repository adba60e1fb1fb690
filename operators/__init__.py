"""The Concierge domain: pure logic, no Bytewax, no Kafka, no clock, no I/O.

Read it in the order an event meets it, the conductor on top and the shared model beneath:

- :mod:`operators.ingest`: the gate, raw bytes to an event or a dead letter.
- :mod:`operators.journey`: the conductor, one customer's journey: what falls due, what an
  event changes, the moments it opens and the decisions they get. :mod:`operators.eviction`
  asks every stage when an idle customer may be forgotten.
- The stages: :mod:`operators.identity` (who a customer is: the graph, merges, event-time
  order), :mod:`operators.context` (what their events say: signals, windows, moments, consent,
  feedback), :mod:`operators.decisions` (whether to act, and the guardrails),
  :mod:`operators.measurement` (holdouts, conversions, lift), :mod:`operators.learning`
  (trials, evidence, the channel and template chosen, offline evaluation).
- :mod:`operators.policy`: the policy, read, checked and compiled once into lookup tables.
- :mod:`operators.model`: the records in and out, the customer's state, event time, identifiers.

Arrows run one way: journey, ingest and eviction -> stages -> policy -> model; among the
stages, identity -> decisions -> context, learning and measurement, and learning ->
measurement (tests/unit/test_layers.py holds it).
"""

from operators import moved

moved.install()
