"""One version, told the same everywhere: the package, ``concierge --version``, the changelog
and the image the manifests run; and every version the code or the docs name is one the
changelog describes."""

import re
import tomllib

from tests.conftest import ROOT
from tests.scenarios.conftest import concierge

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
RELEASES = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", CHANGELOG, re.MULTILINE)
NAMED = re.compile(r"(?<![\w.])0\.[1-9]\.0(?![\w.])")
"""A version of Concierge as the code and the docs name one (not a dependency's, an address
or a dashboard's schema version)."""


def test_the_version_is_the_changelogs_newest_and_the_one_concierge_prints():
    assert RELEASES[0] == VERSION
    newest_first = sorted(RELEASES, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
    assert newest_first == RELEASES
    done = concierge("--version")
    assert (done.returncode, done.stdout) == (0, f"concierge {VERSION}\n")


def test_the_manifests_run_the_image_of_this_version():
    image = f"ghcr.io/example/concierge:{VERSION}"
    assert image in (ROOT / "deploy/kubernetes/statefulset.yaml").read_text()
    assert f"newTag: {VERSION}\n" in (ROOT / "deploy/kubernetes/kustomization.yaml").read_text()
    assert image in (ROOT / "deploy/Dockerfile").read_text()
    assert image in (ROOT / "deploy/README.md").read_text()


def test_every_version_the_code_and_the_docs_name_is_in_the_changelog():
    texts = [
        *(ROOT / "flows").glob("**/*.py"),
        *(ROOT / "operators").glob("**/*.py"),
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
        ROOT / "bench/README.md",
        ROOT / "deploy/README.md",
    ]
    named = {(path.name, v) for path in texts for v in NAMED.findall(path.read_text())}
    assert named, "the graph formats name the versions that wrote them"
    assert {(name, v) for name, v in named if v not in RELEASES} == set()
