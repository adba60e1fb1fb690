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
