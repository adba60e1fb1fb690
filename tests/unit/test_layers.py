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
    "learning": {"measurement", "policy", "model"},
    "decisions": {"context", "learning", "measurement", "policy", "model"},
    "identity": {"decisions", "context", "learning", "measurement", "policy", "model"},
}
"""Each group, and the groups beneath it that it may import; the modules on top (journey,
ingest, eviction) may import any."""

IMPURE = (
    *("bytewax", "confluent_kafka", "flows", "prometheus_client", "rocksdict", "sqlite3"),
    *("os", "pathlib", "socket", "subprocess", "threading", "time", "urllib", "http"),
)
"""What the domain never imports: the dataflow, Kafka, the wiring, metrics, storage, the file
system, the network, threads, the clock."""


def _group(path: Path) -> str | None:
    """The group a module of operators/ belongs to (None: on top)."""
    parts = path.relative_to(OPERATORS).parts
    return parts[0] if len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full name: ``from operators import journey`` is
    ``operators.journey``, and a relative import is resolved from the package."""
    package = ".".join(path.relative_to(OPERATORS.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _clock_or_io(path: Path) -> list[str]:
    """Calls that read the clock or open a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.append(f"open() at line {node.lineno}")
            elif isinstance(func, ast.Attribute) and func.attr in ("now", "utcnow", "today"):
                found.append(f".{func.attr}() at line {node.lineno}")
    return found


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


def test_the_domain_does_no_io_and_reads_no_clock():
    wrong = [
        f"{path.relative_to(OPERATORS.parent)} imports {name}"
        for path in sorted(OPERATORS.rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in IMPURE
    ]
    wrong += [
        f"{path.relative_to(OPERATORS.parent)}: {call}"
        for path in sorted(OPERATORS.rglob("*.py"))
        for call in _clock_or_io(path)
    ]
    assert not wrong, "\n".join(wrong)
