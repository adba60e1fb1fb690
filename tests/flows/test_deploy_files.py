"""The Prometheus rules and the Grafana dashboard name only metrics the flow serves, and
only recording rules the rules file defines."""

import json
import re

from prometheus_client import REGISTRY
from ruamel.yaml import YAML

import flows.metrics  # noqa: F401  (registers the flow's metrics)
from tests.conftest import ROOT

RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "concierge-dashboard.json"
SERIES = re.compile(r"\b(concierge_[a-z0-9_]+)")
RECORDED = re.compile(r"\b([a-z_]+:concierge_[a-z0-9_]+:[a-z0-9_]+)")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def served() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        names.update(sample.name for sample in metric.samples)
    return names


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def rules():
    return [
        rule
        for group in YAML(typ="safe").load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]


def check(expr: str, recorded: set[str], known: set[str]) -> list[str]:
    missing = [r for r in RECORDED.findall(expr) if r not in recorded]
    plain = RECORDED.sub("", expr)
    missing += [s for s in SERIES.findall(plain) if s not in known and base(s) not in known]
    return missing


def test_every_rule_names_served_metrics_and_defined_records():
    known = {base(n) for n in served()} | served()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        assert check(rule["expr"], recorded, known) == [], rule.get("record") or rule["alert"]
    assert "job_action:concierge_lift:absolute_7d" in recorded


def test_every_dashboard_panel_names_served_metrics_and_defined_records():
    known = {base(n) for n in served()} | served()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        for target in panel.get("targets", []):
            assert check(target["expr"], recorded, known) == [], panel["title"]
    titles = {panel["title"] for panel in panels}
    assert "Conversion rate, sent vs held out (7 days)" in titles


OPERATIONS = ROOT / "docs" / "operations.md"
STATEFULSET = ROOT / "deploy" / "kubernetes" / "statefulset.yaml"
RUNBOOK = "https://github.com/example/concierge/blob/main/docs/operations.md#"


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_alert_has_a_runbook_url_to_its_entry_in_the_runbook():
    page = OPERATIONS.read_text()
    runbook = page.split("\n## Runbook\n", 1)[1].split("\n## ", 1)[0]
    entries = anchors(runbook)
    alerts = [rule for rule in rules() if "alert" in rule]
    for alert in alerts:
        url = alert["annotations"].get("runbook_url", "")
        assert url.startswith(RUNBOOK), alert["alert"]
        assert url[len(RUNBOOK) :] in entries, f"{alert['alert']}: no Runbook entry {url}"
    stops = {
        "recoverystoredamaged",
        "identitygraphmismatch",
    }  # what a process says as it stops: no alert to fire
    assert len(entries) == len(alerts) + len(stops), "one Runbook entry per alert, and no other"
    assert stops <= entries


def test_the_dashboard_charts_merges_held_back_by_rule_late_events_and_evictions():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    charted = {
        panel["title"]: " ".join(target["expr"] for target in panel.get("targets", []))
        for panel in panels
    }
    for title, metric in [
        ("Identity merges /s", "concierge_identity_merges_total"),
        ("Held back /s by rule", "concierge_decisions_held_back_total"),
        ("Late events /s", "concierge_late_events_total"),
        ("Customers evicted and revived /s", "concierge_customers_evicted_total"),
        ("Snapshot age", "concierge_snapshot_age_seconds"),
        ("Timers pending", "concierge_timers_pending"),
        ("Processes by version and policy", "concierge_build_info"),
    ]:
        assert metric in charted.get(title, ""), title
    assert "by (outcome, rule)" in charted["Held back /s by rule"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))


def test_the_pods_serve_on_every_interface_and_are_probed_on_healthz_and_readyz():
    pod = YAML(typ="safe").load(STATEFULSET.read_text())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container["args"][0]
    assert "--metrics-host 0.0.0.0" in command and "--log-format json" in command
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the stop drains for its grace, and interrupts itself before Kubernetes kills it
    grace = float(re.search(r"--stop-grace (\S+)", command).group(1))
    assert 8 <= grace <= pod["terminationGracePeriodSeconds"] - 5
