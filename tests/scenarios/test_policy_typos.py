"""A misspelt name validates but switches something off: ``validate`` says which name looks
like a typo and what it may have meant (operators/policy/typos.py)."""

from __future__ import annotations

import gzip
import subprocess

from flows.commands.demo import BUNDLED_POLICY
from flows.commands.generator import Generator
from operators.policy.load import load_policy_warned
from tests.conftest import FULL_POLICY, REFERENCE_POLICY, event_dict, write_jsonl
from tests.scenarios.conftest import CONCIERGE, concierge

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


def _stream(tmp_path):
    """Ana grants marketing, views a lamp three times, starts a checkout; one line is
    broken."""
    events = [event_dict("consent_changed", "2026-11-20T10:00:00Z", GRANT)]
    events += [
        event_dict("product_view", f"2026-11-20T11:0{n}:00Z", {"product_id": "lamp"})
        for n in range(3)
    ]
    events += [event_dict("checkout_started", "2026-11-20T11:05:00Z"), b'{"type": ']
    return write_jsonl(tmp_path / "week.jsonl", events)


def test_validate_events_names_what_the_policy_listens_for_that_no_event_has(tmp_path):
    text = REFERENCE_POLICY.read_text().replace("on: checkout_started", "on: checkout_strated")
    text = text.replace("group_by: properties.product_id", "group_by: properties.product")
    policy = tmp_path / "policy.yaml"
    policy.write_text(text.replace("consent: marketing", "consent: marketting"))  # every action
    done = concierge("validate", str(policy), "--events", str(_stream(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "week.jsonl: 6 records, 5 events of 3 types"
    said = [line.split(": warning: ", 1)[1] for line in done.stderr.splitlines() if "warn" in line]
    for warning in (
        "signals.checkout_abandoned.on (line 51): event type 'checkout_strated' is in no event "
        "of week.jsonl (5 events); did you mean 'checkout_started'? 1 event has it",
        "signals.repeat_product_interest.group_by (line 35): properties.product is on no "
        "product_view event of week.jsonl (3 product_view events); did you mean "
        "properties.product_id? 3 product_view events carry it",
        "actions.product_nudge.consent (line 79): consent purpose 'marketting' is granted by no "
        "consent_changed event of week.jsonl (1 consent_changed event), so an action needing "
        "it is never sent; did you mean 'marketing'? 1 event grants it (also named at "
        "actions.loan_offer.consent (line 87), actions.cart_recovery.consent (line 102), "
        "actions.win_back_offer.consent (line 110))",
        "signals.eligibility_checks.on (line 39): event type 'loan_eligibility_check' is in no "
        "event of week.jsonl (5 events)",  # true too: nothing close to it
    ):
        assert warning in said, (warning, said)
    assert said[0].startswith("signals.checkout_abandoned.on (line 51): event type "), "a typo"
    assert done.stderr.splitlines()[-1] == (
        "concierge validate: note: 1 of the 6 records of week.jsonl are not events (not JSON, "
        "not an object, no type, or too large): not counted (replay makes them dead letters)"
    )
    strict = concierge("validate", "--strict", str(policy), "--events", str(_stream(tmp_path)))
    assert strict.returncode == 2 and f"{len(said)} problem(s)" in strict.stderr


def test_validate_events_is_quiet_where_the_stream_has_every_name_gzip_or_stdin(tmp_path):
    lines = b"\n".join(Generator(customers=100, seed=3).events(1500)) + b"\n"
    packed = tmp_path / "stream.jsonl.gz"
    packed.write_bytes(gzip.compress(lines))
    done = concierge("validate", str(REFERENCE_POLICY), "--events", str(packed))
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    assert "reading" not in done.stderr, "no progress where stderr is no terminal"
    assert done.stdout.splitlines()[1].startswith("stream.jsonl.gz: 1,500 records, ")
    piped = subprocess.run(
        [CONCIERGE, "validate", str(REFERENCE_POLICY), "--events", "-"],
        input=lines,
        capture_output=True,
        timeout=60,
    )
    assert piped.returncode == 0 and b"warning" not in piped.stderr
    assert piped.stdout.decode().splitlines()[1] == done.stdout.splitlines()[1].replace(
        "stream.jsonl.gz", "<stdin>"
    )
