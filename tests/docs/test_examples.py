"""The example policies a user is shown are the spec's, one file each: the package, the image
and the Kubernetes manifests take them from ``examples/``, not from copies that could drift."""

import hashlib
import re

from ruamel.yaml import YAML

from tests.conftest import (
    BEYOND,
    EXAMPLES,
    OURS,
    ROOT,
    SPEC_FULL_POLICY,
    SPEC_POLICY,
    within_the_spec,
)
from tests.scenarios.conftest import concierge

BUNDLED = {
    ROOT / "flows" / "demo_policy.yaml": EXAMPLES / "policy.yaml",
    ROOT / "flows" / "policy_full.yaml": EXAMPLES / "policy-full.yaml",
}
"""What the package ships (``concierge demo`` reads the first), and the example each is."""
SPEC_DIGESTS = (
    "07d2c81b17c40d4ca4e1864490151792aad3bad0861c448d6e2d02e2604bdf41",
    "1266908ddf18fc7f2e81142a054b1eae625f832700b6b28b9041aa972716c909",
)
"""The sha256 of the spec's ``policy.yaml`` and ``policy-full.yaml`` the examples were copied
from: what a clone alone, without the spec beside it, checks them against."""


def test_the_examples_are_the_spec_policies():
    ours = within_the_spec((EXAMPLES / "policy-full.yaml").read_text())
    added = {line for line in ours if line.startswith("# ") or line in OURS}
    if SPEC_POLICY.is_file():
        assert (EXAMPLES / "policy.yaml").read_text() == SPEC_POLICY.read_text()
        spec = SPEC_FULL_POLICY.read_text().splitlines()
        added -= set(spec)
        assert [line for line in ours if line not in added] == spec, "copy it again"
        digests = tuple(
            hashlib.sha256(p.read_bytes()).hexdigest() for p in (SPEC_POLICY, SPEC_FULL_POLICY)
        )
        assert digests == SPEC_DIGESTS, "the spec changed: copy it again, and its digests"
    else:  # a clone alone: the copies are still of the spec they were taken from
        reference = hashlib.sha256((EXAMPLES / "policy.yaml").read_bytes()).hexdigest()
        full = "\n".join(line for line in ours if line not in OURS) + "\n"
        assert (reference, hashlib.sha256(full.encode()).hexdigest()) == SPEC_DIGESTS
        added &= OURS
    assert added, "examples/policy-full.yaml comments the identifier limits' defaults"


def test_a_clone_alone_tests_against_the_spec_full_policy_not_the_example():
    from tests.conftest import FULL_POLICY

    assert hashlib.sha256(FULL_POLICY.read_bytes()).hexdigest() == SPEC_DIGESTS[1]
    assert "learning:" not in FULL_POLICY.read_text()


def test_the_full_example_adds_learning_at_its_end():
    text = (EXAMPLES / "policy-full.yaml").read_text()
    assert BEYOND in text
    beyond = text[text.index(BEYOND) :]
    assert beyond.count("\nlearning:") == 1


def test_both_examples_validate_without_a_warning():
    for example in BUNDLED.values():
        checked = concierge("validate", str(example))
        assert (checked.returncode, checked.stderr) == (0, ""), example


def test_the_package_ships_the_examples_through_links_the_install_and_the_image_follow():
    for shipped, example in BUNDLED.items():
        assert shipped.is_symlink() and shipped.resolve() == example.resolve(), shipped
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    context = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!examples/" in context
    copied = re.search(r"^COPY examples/ examples/$", dockerfile, flags=re.MULTILINE)
    installed = dockerfile.index("RUN pip install .")
    assert copied and copied.start() < installed, "the links must resolve when pip installs"


def test_the_kubernetes_policy_is_the_reference_example():
    configmap = YAML(typ="safe").load((ROOT / "deploy/kubernetes/policy-configmap.yaml").open())
    assert configmap["data"]["policy.yaml"] == (EXAMPLES / "policy.yaml").read_text()
