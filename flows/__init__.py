"""Concierge's wiring: the Bytewax dataflow and its edges (Kafka, files, broker, metrics, CLI)."""


def package_version() -> str:
    """The installed package's version: what ``concierge --version`` prints and the build-info
    metric carries."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("concierge")
    except PackageNotFoundError:
        return "unknown"
