"""The command line under attack. ``concierge replay``: bad records anywhere in a file are
each one dead letter with a reason and their line, records in = events accepted + dead
letters, and the good records around them are decided exactly as without them.
``concierge validate``: a hostile policy is exit 0 or 2, never a traceback or a hang."""

from __future__ import annotations

import os
import re
import subprocess

import orjson
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.conftest import REFERENCE_POLICY, event_dict
from tests.hostile import EXPECTED_REASONS, attacks, bad_records
from tests.scenarios.conftest import CONCIERGE, concierge
from tests.unit.policy.test_hostile_policies import mangled_text, mutated_documents

one_line = bad_records.filter(lambda record: b"\n" not in record and b"\r" not in record)
"""A line of a file cannot hold a line break: those records are not lines."""
GRANT = {"purpose": "marketing", "channel": "*", "granted": True}


def good_story() -> list[bytes]:
    """Ana browses, Bob is stuck, Cleo mentions a bereavement, Dan abandons a checkout."""
    events = [
        event_dict("consent_changed", "2026-11-20T08:00:00Z", GRANT, "g-0"),
        *[
            event_dict("product_view", f"2026-11-20T10:{m}:00Z", {"product_id": "coat"}, f"v-{m}")
            for m in (10, 20, 30)
        ],
        *[
            event_dict(
                "help_search", f"2026-11-20T11:{m:02d}:00Z", None, f"h-{m}", anonymous_id="bob"
            )
            for m in (0, 5, 10)
        ],
        event_dict(
            "support_contact",
            "2026-11-20T12:00:00Z",
            {"text": "my husband passed away"},
            "s-1",
            email="cleo@example.com",
        ),
        event_dict("checkout_started", "2026-11-20T13:00:00Z", None, "c-1", anonymous_id="dan"),
    ]
    return [orjson.dumps(e) for e in events]


def _replay(tmp_path, name, lines):
    events = tmp_path / f"{name}.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / name
    done = concierge(
        "replay",
        "--policy",
        str(REFERENCE_POLICY),
        "--events",
        str(events),
        "--out",
        str(out),
        "--until",
        "2026-11-21T12:00:00Z",
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return out


EXPECTED: dict[str, bytes] = {}
"""What the good story alone gives, replayed once."""


def _outputs(out):
    return {
        path.name: path.read_bytes()
        for path in sorted(out.glob("*.jsonl"))
        if path.name != "dlq.jsonl"
    }


@attacks(6, HealthCheck.function_scoped_fixture)
@given(
    bad=st.lists(one_line, min_size=1, max_size=12),
    places=st.lists(st.integers(1, 9), min_size=12, max_size=12),
)
def test_bad_records_anywhere_are_dead_letters_and_change_nothing_else(tmp_path, bad, places):
    good = good_story()
    if not EXPECTED:
        EXPECTED.update(_outputs(_replay(tmp_path, "good", good)))
    expected = dict(EXPECTED)
    lines: list[bytes] = list(good)
    bad_lines: set[int] = set()
    for record, place in zip(bad, places, strict=False):
        at = min(place, len(lines))  # after the first good line: it sets the ingest clock
        lines.insert(at, record)
    for number, line in enumerate(lines, start=1):
        if line not in good:
            bad_lines.add(number)
    out = _replay(tmp_path, "attacked", lines)

    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["events_in"] == len(lines)
    assert summary["events_ok"] + summary["dead_letters"] == summary["events_in"]
    assert summary["events_ok"] == len(good)
    dead = [orjson.loads(line) for line in (out / "dlq.jsonl").read_bytes().splitlines()]
    assert {d["origin"]["line"] for d in dead} == bad_lines and len(dead) == len(bad)
    assert all(d["reason"] in EXPECTED_REASONS and d["detail"] for d in dead)
    assert _outputs(out) == expected


@attacks(8, HealthCheck.function_scoped_fixture)
@given(text=st.one_of(mutated_documents(), mangled_text()))
def test_validate_answers_a_hostile_policy_with_0_or_2_and_no_traceback(tmp_path, text):
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    done = concierge("validate", str(path), timeout=30)
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr
    assert (done.returncode == 0) == ("valid" in done.stdout)


UNSAFE = re.compile(
    rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
)
"""Bytes a terminal acts on: C0 controls but tab and newline, DEL, C1 controls, and the
bidirectional overrides and isolates (UTF-8)."""
ESCAPES = "\x1b]52;c;aGk=\x07\x1b[2J\x9b31m\u202e"
"""A clipboard write (OSC 52), a screen clear, a C1 CSI and a right-to-left override."""


def test_what_people_read_never_carries_a_terminal_escape(tmp_path, reference_policy_path):
    """explain (with and without the events), diff, validate and a command's own errors
    print control characters from events and policies as escapes, never raw."""
    hostile = event_dict(
        "product_view", "2026-11-20T10:00:00Z", {"product_id": ESCAPES}, f"e-{ESCAPES}"
    )
    hostile["identifiers"] = {"email": "esc@example.com"}
    grant = {"purpose": "marketing", "channel": "*", "granted": True}
    consent = event_dict("consent_changed", "2026-11-20T09:00:00Z", grant, email="esc@example.com")
    consent["context"] = {"timezone": "UTC"}
    views = [
        event_dict(
            "product_view", f"2026-11-20T10:0{n}:00Z", {"product_id": "p"}, email="esc@example.com"
        )
        for n in (1, 2, 3)
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in [consent, hostile, *views]) + b"\n")
    named = tmp_path / "named.yaml"
    in_yaml = '"product-nudge\\x1b]52;c;aGk=\\x07\\x1b[2J\\x9b31m\\u202e"'  # escapes YAML reads
    named.write_text(
        reference_policy_path.read_text().replace("template: product-nudge", f"template: {in_yaml}")
    )
    outs = []
    for policy in (reference_policy_path, named):
        out = tmp_path / f"out-{len(outs)}"
        run = concierge(
            "replay", "--policy", str(policy), "--events", str(events), "--out", str(out)
        )
        assert run.returncode == 0, run.stderr
        outs.append(out)
    shown = [
        concierge("explain", "--replay", str(outs[0]), "email:esc@example.com"),
        concierge(
            "explain", "--replay", str(outs[0]), "--events", str(events), "email:esc@example.com"
        ),
        concierge("explain", "--replay", str(outs[1]), "email:esc@example.com"),
        concierge("explain", "--replay", str(outs[1]), "--json", "email:esc@example.com"),
        concierge("diff", str(outs[0]), str(outs[1])),
        concierge("explain", "--replay", str(outs[0]), f"email:{ESCAPES}@example.com"),
        concierge("validate", str(named).replace("named", f"missing{ESCAPES}")),
    ]
    assert "e-\\x1b]52;c;aGk=\\x07" in shown[1].stdout, "the event id, escaped"
    assert "template product-nudge\\x1b]52;c;aGk=\\x07" in shown[2].stdout, "a policy's name too"
    assert "\\u009b31m" in shown[3].stdout and orjson.loads(shown[3].stdout), "JSON stays JSON"
    for done in shown:
        for stream in (done.stdout, done.stderr):
            assert not UNSAFE.search(stream.encode()), (done.args, stream[:500])


def _one_line_exit_2(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and "panicked" not in done.stderr
    return lines[0]


def _snapshot(directory):
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_no_command_destroys_its_own_input(tmp_path, reference_policy_path):
    """An input among the outputs replay replaces, a report over a file that is not one, a
    symbolic link where replay writes, standard input closed: each refused with one line and
    exit 2, before anything is cleared or written."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(good_story()) + b"\n")
    out = tmp_path / "out"
    policy = str(reference_policy_path)
    first = concierge("replay", "--policy", policy, "--events", str(events), "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = _snapshot(out)

    line = _one_line_exit_2(
        concierge(
            "replay", "--policy", policy, "--events", str(out / "audit.jsonl"), "--out", str(out)
        )
    )
    assert "an output this replay replaces" in line
    alias = tmp_path / "alias.jsonl"
    alias.symlink_to(out / "decisions.jsonl")
    _one_line_exit_2(
        concierge("replay", "--policy", policy, "--events", str(alias), "--out", str(out))
    )
    closed = subprocess.run(
        [CONCIERGE, "replay", "--policy", policy, "--events", "-", "--out", str(out)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.close(0),
    )
    assert "standard input is closed" in _one_line_exit_2(closed)
    assert _snapshot(out) == before, "nothing cleared"

    kept = events.read_bytes()
    for target in (events, out / "decisions.jsonl"):
        line = _one_line_exit_2(concierge("report", str(out), "--out", str(target)))
        assert "is not a report" in line
    assert events.read_bytes() == kept and _snapshot(out) == before
    made = concierge("report", str(out), "--out", str(tmp_path / "page.html"))
    assert made.returncode == 0, made.stderr
    again = concierge("report", str(out), "--out", str(tmp_path / "page.html"))
    assert again.returncode == 0, "a report may be written over a report"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "identity").symlink_to(elsewhere, target_is_directory=True)
    line = _one_line_exit_2(
        concierge("replay", "--policy", policy, "--events", str(events), "--out", str(linked))
    )
    assert "is a symbolic link" in line
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]

    state = tmp_path / "state"  # what concierge run keeps: its keys beside its graph
    (state / "identity").mkdir(parents=True)
    (state / "identity" / "CURRENT").write_text("MANIFEST-000001\n")
    (state / "identity.key").write_text("a key")
    line = _one_line_exit_2(
        concierge("replay", "--policy", policy, "--events", str(events), "--out", str(state))
    )
    assert "concierge run's" in line and (state / "identity" / "CURRENT").exists()
