"""The documentation holds: the site builds with every link and anchor checked, the policy
reference is what the schema and the example say, every path a page shows a user is in
the repository, every metric the flow serves is on the operations page, and the README
stays a front page."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client import REGISTRY

import flows.metrics  # noqa: F401  (registers the flow's metrics)
from tests.conftest import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if not p.is_symlink())
"""The pages written for the site (``changelog.md`` is a link to ``CHANGELOG.md``)."""
SHOWN = [ROOT / "README.md", ROOT / "CHANGELOG.md", *PAGES, ROOT / "deploy/README.md"]
SHOWN.append(ROOT / "bench/README.md")
TOP = (".ci", "bench", "deploy", "docs", "examples", "flows", "operators", "schemas", "tests")
TOP_FILES = ("CHANGELOG.md", "Makefile", "README.md", "mkdocs.yml", "pyproject.toml")


def _reference():
    spec = importlib.util.spec_from_file_location("policy_reference", DOCS / "policy_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strictly_every_link_and_anchor_found(tmp_path):
    mkdocs = str(Path(sys.executable).with_name("mkdocs"))
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert done.returncode == 0, done.stderr
    built = {p.relative_to(tmp_path / "site").parts[0] for p in (tmp_path / "site").iterdir()}
    assert {page.stem for page in PAGES} - {"index"} <= built
    assert "changelog" in built


def test_the_policy_reference_is_what_the_schema_and_the_example_give():
    reference = _reference()
    current = (DOCS / "policy.md").read_text()
    assert reference.page(current) == current, "run `make docs` and commit docs/policy.md"


def _fields(node: dict, path: str):
    """Every field of the policy schema, with its path, depth first."""
    for key, child in node.get("properties", {}).items():
        yield f"{path}.{key}".lstrip("."), child
        yield from _fields(child, f"{path}.{key}")
    named = node.get("additionalProperties")
    if isinstance(named, dict):
        for kind in named.get("oneOf", [named]):
            yield f"{path}.<name>".lstrip("."), kind
            yield from _fields(kind, f"{path}.<name>")
    if isinstance(node.get("items"), dict):
        yield from _fields(node["items"], path)


def test_every_policy_field_has_a_meaning_and_a_row_in_the_reference():
    schema = json.loads((ROOT / "schemas/policy.schema.json").read_text())
    page = (DOCS / "policy.md").read_text()
    fields = list(_fields(schema, ""))
    assert len(fields) > 100
    for path, node in fields:
        assert node.get("description"), f"{path}: the schema says nothing of what it means"
        if "." not in path:
            assert f"\n### `{path}`\n" in page, path
        elif not path.endswith("<name>"):
            last = path.rsplit(".", 1)[-1]
            assert re.search(rf"^\| `[^`]*\b{re.escape(last)}` \|", page, re.MULTILINE), path


def _ignored() -> list[str]:
    """What the repository keeps out of git: outputs a page may name, made by running."""
    patterns = [line.strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()]
    bench = (ROOT / "bench/.gitignore").read_text().splitlines()
    return [p for p in patterns if p] + [f"bench/{p}" for p in bench if p]


def _paths(page: Path) -> set[Path]:
    """The repository paths a page names, in links and in code (inline or in blocks): a
    name under a top-level entry of the repository, or, relative to the page, a link or a
    name under an entry of the page's own folder (``kubernetes/...`` in deploy/)."""
    text = page.read_text()
    links = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text))
    code = " ".join(re.findall(r"`+([^`]+)`+", text))
    words = set(re.findall(r"[^\s`'\"()\[\]{}|;,=<>]+", code)) | links
    beside = {entry.name for entry in page.parent.iterdir()} if page.parent != ROOT else set()
    found = set()
    for word in words:
        name = word.rstrip(".:")
        first = name.split("/", 1)[0]
        if "://" in name or "*" in name or not first:
            continue
        if first in (*TOP, *TOP_FILES):
            found.add(ROOT / name)
        elif word in links or first in beside:
            found.add(page.parent / name)
    return found


def test_every_path_the_docs_show_a_user_is_in_the_repository():
    ignored = _ignored()
    missing = []
    for page in SHOWN:
        for path in _paths(page):
            resolved = path.resolve()
            name = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)
            if any(fnmatch.fnmatch(name, pattern) for pattern in ignored):
                continue
            if not path.exists():
                missing.append(f"{page.relative_to(ROOT)}: {name}")
    assert missing == []
    assert sum(len(_paths(page)) for page in SHOWN) > 100


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub (and the site) give a Markdown file's headings."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_anchor_the_readmes_link_to_is_a_heading_there():
    """The site checks its own pages' anchors; the READMEs are read on GitHub."""
    for page in (ROOT / "README.md", ROOT / "deploy/README.md", ROOT / "bench/README.md"):
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text()):
            linked = (page.parent / target).resolve() if target else page
            assert anchor in _anchors(linked.read_text()), f"{page.name}: {target}#{anchor}"


def test_every_metric_the_flow_serves_is_on_the_operations_page_and_no_other():
    page = (DOCS / "operations.md").read_text()
    table = page.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(concierge_[a-z0-9_]+)` \|", table, flags=re.MULTILINE))
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("concierge_")
    }
    assert listed == served


def test_the_readme_is_a_front_page_that_leads_into_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "| `make demo` |" in readme and "| `make test` |" in readme
    linked = set(re.findall(r"\]\(docs/([a-z-]+\.md)\)", readme))
    assert {page.name for page in PAGES} - {"index.md"} <= linked
    assert "](CHANGELOG.md)" in readme
