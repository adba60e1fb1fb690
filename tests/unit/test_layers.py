"""The layout shows the architecture: operators/ is pure, and its arrows run one way
(journey, ingest and eviction -> stages -> policy -> model; see operators/__init__.py)."""

import ast
from pathlib import Path

OPERATORS = Path(__file__).parents[2] / "operators"

MAY_IMPORT = {
    "model": set(),
    "policy": {"model"},
    "measurement": {"policy", "model"},
    "context": {"policy", "model"},
    "decisions": {"context", "measurement", "policy", "model"},
    "identity": {"decisions", "context", "measurement", "policy", "model"},
}
"""Each group, and the groups beneath it that it may import; the modules on top (journey,
ingest, eviction) may import any."""

IMPURE = ("bytewax", "confluent_kafka", "flows", "prometheus_client", "rocksdict", "sqlite3")
"""What the domain never imports: the dataflow, Kafka, the wiring, metrics, storage."""


def _group(path: Path) -> str | None:
    """The group a module of operators/ belongs to (None: on top)."""
    parts = path.relative_to(OPERATORS).parts
    return parts[0] if len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_every_module_belongs_to_a_group_the_docs_name():
    groups = {path.parent.name for path in OPERATORS.glob("*/*.py")}
    assert groups == set(MAY_IMPORT)
    on_top = {path.stem for path in OPERATORS.glob("*.py")}
    assert on_top == {"__init__", "journey", "ingest", "eviction", "moved"}


def test_arrows_between_the_groups_run_one_way():
    wrong = []
    for path in sorted(OPERATORS.rglob("*.py")):
        group = _group(path)
        if group is None:
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "operators" or len(parts) < 2:
                continue
            target = parts[1]
            if target != group and target not in MAY_IMPORT[group]:
                wrong.append(f"{path.relative_to(OPERATORS.parent)} imports {name}")
    assert not wrong, "a lower group imports a higher one (move the type down):\n" + "\n".join(
        wrong
    )


def test_the_domain_imports_no_dataflow_kafka_or_storage():
    wrong = [
        f"{path.relative_to(OPERATORS.parent)} imports {name}"
        for path in sorted(OPERATORS.rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in IMPURE
    ]
    assert not wrong, "\n".join(wrong)
