"""A misspelt name validates but switches something off: ``validate`` says which name looks
like a typo and what it may have meant (operators/policy/typos.py)."""

from __future__ import annotations

from flows.commands.demo import BUNDLED_POLICY
from operators.policy.load import load_policy_warned
from tests.conftest import FULL_POLICY, REFERENCE_POLICY, event_dict, write_jsonl
from tests.scenarios.conftest import concierge

GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def misspelt(tmp_path, wrong: str, right: str, name: str = "typo.yaml"):
    text = REFERENCE_POLICY.read_text()
    at = text.index(right)
    path = tmp_path / name
    path.write_text(text[:at] + wrong + text[at + len(right) :])
    return path


def test_the_reference_policies_and_the_bundled_ones_have_no_warnings():
    bundled_full = BUNDLED_POLICY.with_name("policy_full.yaml")
    for path in (REFERENCE_POLICY, FULL_POLICY, BUNDLED_POLICY, bundled_full):
        assert load_policy_warned(path.read_text(), str(path))[1] == [], path


def test_a_misspelt_consent_purpose_and_event_type_are_named_with_what_was_meant(tmp_path):
    purpose = misspelt(tmp_path, "consent: marketting", "consent: marketing")
    done = concierge("validate", str(purpose))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout
    (warning,) = done.stderr.splitlines()
    assert "warning: actions.product_nudge.consent (line 79)" in warning
    assert "did you mean 'marketing'?" in warning
    event = misspelt(tmp_path, "on: checkout_strated", "on: checkout_started")
    done = concierge("validate", "--strict", str(event))
    assert done.returncode == 2
    assert "signals.checkout_abandoned.on (line 51)" in done.stderr
    assert "did you mean 'checkout_started'?" in done.stderr


def test_a_name_used_twice_or_unlike_any_other_is_no_typo(tmp_path):
    text = REFERENCE_POLICY.read_text().replace("on: checkout_started", "on: basket_opened")
    text = text.replace("unless: purchase", "unless: basket_closed")
    path = tmp_path / "own-names.yaml"
    path.write_text(text)
    assert load_policy_warned(path.read_text())[1] == []
    twice = REFERENCE_POLICY.read_text().replace("consent: marketing", "consent: marketting")
    assert load_policy_warned(twice)[1] == []  # every action says it: a purpose of its own


def test_replay_says_so_too_where_the_summary_would_not(tmp_path, replay):
    events = [event_dict("consent_changed", "2026-11-20T10:00:00Z", GRANT)]
    events += [
        event_dict("product_view", f"2026-11-20T11:0{n}:00Z", {"product_id": "p-1"})
        for n in range(3)
    ]
    policy = misspelt(tmp_path, "consent: marketting", "consent: marketing")
    result = replay(write_jsonl(tmp_path / "events.jsonl", events), policy=policy)
    assert result.returncode == 0
    assert "did you mean 'marketing'?" in result.stderr
    assert [d["outcome"] for d in result.lines("decisions.jsonl")] == ["no_consent"]
