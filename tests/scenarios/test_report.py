"""``concierge report``: one self-contained HTML page about a replay, checked in a real
browser (headless Chromium) as well as by its numbers."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from PIL import Image

from flows.commands.generator import Generator
from tests.browser import Page
from tests.conftest import FULL_POLICY, REFERENCE_POLICY
from tests.scenarios.conftest import concierge

BAR_BLUE = (0x3B, 0x6E, 0xA8)


@pytest.fixture(scope="module")
def replays(tmp_path_factory):
    """The same 6,000 events replayed under the full policy (holdouts and conversions) and
    under the reference one."""
    root = tmp_path_factory.mktemp("report")
    events = root / "events.jsonl"
    events.write_bytes(b"\n".join(Generator(customers=400, seed=11).events(6000)) + b"\n")
    outs = {}
    for name, policy in (("full", FULL_POLICY), ("reference", REFERENCE_POLICY)):
        out = root / name
        args = ["replay", "--events", str(events), "--out", str(out), "--quiet"]
        args += ["--until", "2027-01-10T00:00:00Z"]
        args += ["--policy", str(policy)]
        done = concierge(*args)
        assert done.returncode == 0, done.stderr
        outs[name] = out
    return outs


class _Tables(HTMLParser):
    """Each section's table, as {row label: [cells]}, by the section's heading."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list[str]]] = {}
        self._section = ""
        self._in: str | None = None
        self._row: list[str] | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "td", "th"):
            self._in, self._text = tag, ""
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag == "h2":
            self._section = self._text
            self.tables[self._section] = {}
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(self._text)
        elif tag == "tr" and self._row:
            self.tables[self._section][self._row[0]] = self._row[1:]
            self._row = None
        self._in = None

    def handle_data(self, data):
        if self._in:
            self._text += data


def _tables(page: Path) -> dict[str, dict[str, list[str]]]:
    parser = _Tables()
    parser.feed(page.read_text())
    return parser.tables


def _number(cell: str) -> int:
    return int(cell.replace(",", ""))


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_the_report_is_one_page_needing_no_network_whose_numbers_are_the_replays(replays):
    out = replays["full"]
    done = concierge("report", str(out))
    assert done.returncode == 0, done.stderr
    page = out / "report.html"
    assert done.stdout.strip() == str(page)
    text = page.read_text()
    assert "<script" not in text and "<link" not in text and "src=" not in text
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }, "the page refers to something it would fetch"
    assert text.count("<svg") == 5
    summary = orjson.loads((out / "summary.json").read_bytes())
    tables = _tables(page)
    decisions = tables["Decisions by outcome and rule"]
    for outcome, n in summary["decisions"].items():
        assert _number(decisions[outcome][0]) == n
    hours = tables["Sends by the customer's local hour"]
    sent = sum(summary["actions"].values())
    assert _number(hours["sent"][0]) == sent
    assert sum(_number(v[0]) for k, v in hours.items() if k[:2].isdigit()) == sent
    assert _number(hours["of them inside quiet hours"][0]) == 0  # quiet hours held
    fatigue = tables["Actions per customer per 7 days (fatigue)"]
    peak = summary["fatigue"]["per_customer_peak"]
    assert _number(fatigue["people sent anything"][0]) == peak["observed"]
    assert f"{peak['max']} actions" in fatigue or peak["max"] == 1
    deferred = sum(1 for d in _records(out / "decisions.jsonl") if d["outcome"] == "deferred")
    delays = tables["Deferral delays"]
    assert (
        sum(_number(delays[b][0]) for b in ("< 1h", "1-2h", "2-4h", "4-8h"))
        + sum(_number(delays[b][0]) for b in ("8-12h", "12-24h", "24h+"))
        == deferred
    )
    lift = tables["Conversions and lift"]
    measured = summary["lift"]["product_nudge"]
    assert lift["product_nudge: sent rate"][0] == f"{measured['rate_sent']:.1%}"
    assert lift["product_nudge: held-out rate"][0] == f"{measured['rate_held_out']:.1%}"

    replayed_again = concierge(
        *("replay", "--policy", str(FULL_POLICY), "--events", str(out.parent / "events.jsonl")),
        *("--out", str(out), "--quiet", "--until", "2027-01-10T00:00:00Z"),
    )
    assert replayed_again.returncode == 0
    assert not page.exists(), "a report about the replay it replaced stayed"
    concierge("report", str(out))
    again = concierge("report", str(out), "--out", str(out / "again.html"))
    assert again.returncode == 0
    assert (out / "again.html").read_bytes() == page.read_bytes()


def test_compare_puts_two_replays_side_by_side_with_the_change(replays, tmp_path):
    page = tmp_path / "compared.html"
    done = concierge(
        "report", str(replays["full"]), "--compare", str(replays["reference"]), "--out", str(page)
    )
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert text.count("<svg") == 4 * 2 + 1  # the reference policy measures no conversions
    assert "this replay's policy measures no conversions" in text
    decisions = _tables(page)["Decisions by outcome and rule"]
    assert decisions["decisions"] == ["reference", "full", "change"]
    before, after, change = decisions["sent"]
    expected = _number(after) - _number(before)
    assert change == (f"{expected:+,}" if expected else "0")
    assert "held_out" in decisions  # only the full policy holds customers out
    assert _number(decisions["held_out"][0]) == 0 < _number(decisions["held_out"][1])


def test_report_refuses_a_directory_without_a_replay(tmp_path):
    done = concierge("report", str(tmp_path))
    assert done.returncode == 2
    assert "no replay output" in done.stderr


def test_the_report_renders_its_charts_in_chromium_with_a_quiet_console(replays, tmp_path):
    page = tmp_path / "compared.html"
    done = concierge(
        "report", str(replays["reference"]), "--compare", str(replays["full"]), "--out", str(page)
    )
    assert done.returncode == 0, done.stderr
    with Page(1500, 900) as browser:
        browser.open(page.as_uri())
        charts = browser.evaluate(
            "[...document.querySelectorAll('svg')].map(s => {"
            " const box = s.getBoundingClientRect();"
            " return [box.width, box.height, s.querySelectorAll('path, rect, use').length]; })"
        )
        shot = browser.screenshot(tmp_path / "report.png")
        errors = browser.errors()
    assert errors == []
    assert len(charts) == 9
    for width, height, marks in charts:
        assert width > 300 and height > 100, "a chart was not laid out"
        assert marks > 10, "a chart drew nothing"
    image = Image.open(shot).convert("RGB")
    assert image.height > 2000  # the whole page, not the first screen
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is blank"
    blue = sum(n for n, colour in colours if colour == BAR_BLUE)
    assert blue > 5000, "the charts' bars are not on the screenshot"


def test_the_browser_check_sees_a_page_that_fails(tmp_path):
    """The console check above would catch a broken page: here it does."""
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><svg></svg><script>console.error('no'); x.y;</script>")
    with Page() as browser:
        browser.open(broken.as_uri())
        errors = browser.errors()
    assert [e["level"] for e in errors] == ["error", "exception"]
