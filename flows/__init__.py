"""Concierge's wiring: the Bytewax dataflow and its edges.

- :mod:`flows.orchestrator` builds the dataflow in stage order; :mod:`flows.identity` and
  :mod:`flows.journey` are its two stateful steps, adapting Bytewax's logic to the domain's
  (``operators/``), and :mod:`flows.progress` carries how far the input has got between them.
- :mod:`flows.replay` runs it over a file; :mod:`flows.kafka` runs it against Kafka
  (``concierge run``), with its connectors, settings, topics, broker and recovery.
- :mod:`flows.commands`: the other commands; :mod:`flows.cli` parses them all.
- Shared by both modes: metrics, logs, the identity graph's store, the deployment's keys.
"""


def package_version() -> str:
    """The installed package's version: what ``concierge --version`` prints and the build-info
    metric carries."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("concierge")
    except PackageNotFoundError:
        return "unknown"
