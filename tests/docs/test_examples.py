"""The example policies a user is shown are the spec's, one file each: the package, the image
and the Kubernetes manifests take them from ``examples/``, not from copies that could drift."""

import re

import pytest
from ruamel.yaml import YAML

from tests.conftest import EXAMPLES, ROOT, SPEC_FULL_POLICY, SPEC_POLICY
from tests.scenarios.conftest import concierge

BUNDLED = {
    ROOT / "flows" / "demo_policy.yaml": EXAMPLES / "policy.yaml",
    ROOT / "flows" / "policy_full.yaml": EXAMPLES / "policy-full.yaml",
}
"""What the package ships (``concierge demo`` reads the first), and the example each is."""


@pytest.mark.skipif(not SPEC_POLICY.is_file(), reason="the spec is not beside this clone")
def test_the_examples_are_the_spec_policies():
    assert (EXAMPLES / "policy.yaml").read_text() == SPEC_POLICY.read_text()
    spec = SPEC_FULL_POLICY.read_text().splitlines()
    ours = (EXAMPLES / "policy-full.yaml").read_text().splitlines()
    added = {line for line in ours if line.startswith("# ")} - set(spec)
    assert added, "examples/policy-full.yaml comments the identifier limits' defaults"
    assert [line for line in ours if line not in added] == spec, "copy it again"


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
