"""``concierge report``: one self-contained HTML page about a replay, or two side by side.

Charts are drawn by matplotlib's SVG backend (no browser, no display) and put inline, with
the numbers each one shows in a table beside it; the page needs no network and runs no
script. The same replays give the same bytes.
"""

from __future__ import annotations

import html
import io
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("svg")
from matplotlib.figure import Figure

from flows.commands.report_data import DELAY_BINS, DELAY_LAST, EXEMPT, HELD, HOUR_MS, Run
from operators.policy.compiled import Budget, Pace

matplotlib.rcParams.update(
    {
        "svg.fonttype": "none",  # text stays text: smaller, and searchable in the page
        "svg.hashsalt": "concierge",  # stable element ids: the same page for the same runs
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)
COLOURS = ("#3b6ea8", "#e0a030", "#5a9e6f", "#b05060", "#7d6bb0", "#888888")
OUTCOME_ORDER = (
    "sent",
    "deferred",
    "held_out",
    "capped",
    "cooldown",
    "suppressed",
    "no_consent",
    "stale",
    "outranked",
    "ineligible",
    "unreachable",
)

METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
Table = tuple[list[str], list[list[str]]]
"""Column headings, then rows of cells."""


GENERATOR = '<meta name="generator" content="concierge report">'
"""What marks a page as a report: ``report --out`` overwrites only a page so marked."""


def is_report(path: Path) -> bool:
    """Whether the file at ``path`` is a page ``concierge report`` wrote (one written before
    the mark is known by its title)."""
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    return GENERATOR.encode() in head or b"<title>Concierge replay report: " in head


def write_report(runs: Sequence[Run], out: Path) -> Path:
    """Write the page about ``runs`` (one, or two compared) to ``out``."""
    sections = [
        _decisions(runs),
        _fatigue(runs),
        _local_hours(runs),
        _delays(runs),
        _capacity(runs),
        _lift(runs),
        _learning(runs),
    ]
    out.write_text(_page(runs, [s for s in sections if s is not None]), encoding="utf-8")
    return out


Section = tuple[str, str, list[str], Table]
"""Title, what it shows, one chart (SVG) per run, the numbers."""


def _decisions(runs: Sequence[Run]) -> Section:
    outcomes = [o for o in OUTCOME_ORDER if any(r.outcomes[o] for r in runs)]
    outcomes += sorted({o for r in runs for o in r.outcomes} - set(outcomes))
    top = max((r.outcomes[o] for r in runs for o in outcomes), default=1)

    def chart(run: Run) -> str:
        fig = Figure(figsize=(5.2, 0.32 * len(outcomes) + 0.9))
        ax = fig.add_subplot()
        values = [run.outcomes[o] for o in outcomes]
        bars = ax.barh(outcomes[::-1], values[::-1], color=COLOURS[0])
        ax.bar_label(bars, labels=[f"{v:,}" for v in values[::-1]], padding=3)
        ax.set_xlim(0, top * 1.18 or 1)
        ax.set_xlabel("decisions")
        return _svg(fig, f"Decisions by outcome, {run.name}")

    rows: list[tuple[str, Callable[[Run], int]]] = [
        (o, lambda r, o=o: r.outcomes[o]) for o in outcomes
    ]
    rules = sorted({key for r in runs for key in r.by_rule})
    rows += [
        (f"{outcome} by {rule}", lambda r, k=(outcome, rule): r.by_rule[k])
        for outcome, rule in rules
        if rule != "-"
    ]
    return (
        "Decisions by outcome and rule",
        "Every decision, sent or not; the table also splits those held back by the rule "
        "that held them (a cap, suppression, eligibility or fatigue rule, quiet hours).",
        [chart(r) for r in runs],
        _compared(runs, "decisions", rows),
    )


def _fatigue(runs: Sequence[Run]) -> Section:
    counts = sorted({n for r in runs for n in r.peaks})
    top = max((r.peaks[n] for r in runs for n in counts), default=1)

    def chart(run: Run) -> str:
        fig = Figure(figsize=(5.2, 2.6))
        ax = fig.add_subplot()
        bars = ax.bar([str(n) for n in counts], [run.peaks[n] for n in counts], color=COLOURS[2])
        ax.bar_label(bars, labels=[f"{run.peaks[n]:,}" for n in counts], padding=2)
        ax.set_ylim(0, top * 1.15 or 1)
        ax.set_xlabel("actions in the person's busiest 7 days")
        ax.set_ylabel("people")
        return _svg(fig, f"Actions per person per 7 days, {run.name}")

    rows: list[tuple[str, Callable[[Run], int]]] = [
        (f"{n} action{'s' if n != 1 else ''}", lambda r, n=n: r.peaks[n]) for n in counts
    ]
    rows.append(("people sent anything", lambda r: sum(r.peaks.values())))
    return (
        "Actions per customer per 7 days (fatigue)",
        "Each person's busiest 7 days: how many actions they got in it, a profile merged "
        "into another counted with it.",
        [chart(r) for r in runs],
        _compared(runs, "people", rows),
    )


def _local_hours(runs: Sequence[Run]) -> Section:
    top = max((r.hours[HELD][h] + r.hours[EXEMPT][h] for r in runs for h in range(24)), default=1)

    def chart(run: Run) -> str:
        fig = Figure(figsize=(5.2, 2.6))
        ax = fig.add_subplot()
        quiet = run.policy.quiet_hours
        if quiet is not None and quiet.start != quiet.end:
            start, end = quiet.start / 60, quiet.end / 60
            spans = [(start, end)] if start < end else [(start, 24), (0, end)]
            for n, (low, high) in enumerate(spans):
                ax.axvspan(
                    low - 0.5,
                    high - 0.5,
                    color="#d8d8e8",
                    zorder=0,
                    label="quiet hours (default)" if n == 0 else None,
                )
        hours = list(range(24))
        ax.bar(hours, run.hours[HELD], color=COLOURS[0], label=HELD)
        ax.bar(hours, run.hours[EXEMPT], bottom=run.hours[HELD], color=COLOURS[1], label=EXEMPT)
        ax.set_xticks(range(0, 24, 3), [f"{h:02d}:00" for h in range(0, 24, 3)])
        ax.set_xlim(-0.5, 23.5)
        ax.set_ylim(0, top * 1.1 or 1)
        ax.set_xlabel("the customer's local hour")
        ax.set_ylabel("actions sent")
        ax.legend(fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1), ncol=3)
        return _svg(fig, f"Actions sent by the customer's local hour, {run.name}")

    rows: list[tuple[str, Callable[[Run], int]]] = [
        ("sent", lambda r: r.sent),
        (HELD, lambda r: sum(r.hours[HELD])),
        ("of them inside quiet hours", lambda r: r.in_quiet_hours),
        (EXEMPT, lambda r: sum(r.hours[EXEMPT])),
    ]
    rows += [
        (f"{h:02d}:00-{h:02d}:59", lambda r, h=h: r.hours[HELD][h] + r.hours[EXEMPT][h])
        for h in range(24)
    ]
    windows = "; ".join(_quiet_text(r) for r in runs)
    return (
        "Sends by the customer's local hour",
        "Each action at the hour it was decided in the customer's own time zone; the band "
        f"is the policy's default quiet hours ({windows}).",
        [chart(r) for r in runs],
        _compared(runs, "actions", rows),
    )


def _capacity(runs: Sequence[Run]) -> Section | None:
    """Sends against each pace of the policies' ``capacity`` (either run's, so a replay
    without capacity shows what the pace would have had to take), and each budget's
    busiest period."""
    paces: dict[str, Pace] = {}
    budgets: dict[str, Budget] = {}
    for run in runs:
        if run.policy.capacity is not None:
            for pace in run.policy.capacity.paces:
                paces.setdefault(pace.name, pace)
            for budget in run.policy.capacity.budgets:
                budgets.setdefault(budget.name, budget)
    if not paces and not budgets:
        return None
    start = min((leaves for r in runs for leaves, *_ in r.leaves), default=0)
    start -= start % HOUR_MS

    counts: dict[tuple[int, str], Counter[int]] = {}

    def counted(run: Run, pace: Pace) -> Counter[int]:
        """Sends per interval of ``pace`` (counted once per run; the chart and the rows read
        them again)."""
        key = (id(run), pace.name)
        if key not in counts:
            counts[key] = Counter(
                pace.interval(leaves)
                for leaves, _, action, channel in run.leaves
                if pace.name in (action, channel)
            )
        return counts[key]

    def peaks(run: Run, pace: Pace) -> dict[int, int]:
        """The hour (from the first send) -> the most sends in one of its intervals."""
        by_hour: dict[int, int] = {}
        for interval, n in counted(run, pace).items():
            hour = (pace.start(interval) - start) // HOUR_MS
            by_hour[hour] = max(by_hour.get(hour, 0), n)
        return by_hour

    shown = list(paces.values())[:4]
    top = max((n for r in runs for p in shown for n in peaks(r, p).values()), default=1)

    def chart(run: Run) -> str:
        fig = Figure(figsize=(5.2, 1.5 * max(len(shown), 1) + 0.6))
        axes = fig.subplots(max(len(shown), 1), 1, squeeze=False)[:, 0]
        for n, (ax, pace) in enumerate(zip(axes, shown, strict=False)):
            by_hour = peaks(run, pace)
            hours = sorted(by_hour)
            ax.bar(hours, [by_hour[h] for h in hours], width=1.0, color=COLOURS[n % 4])
            ax.axhline(pace.limit, color="#b05060", linestyle="--", linewidth=1)
            ax.set_ylim(0, max(top, pace.limit) * 1.15)
            ax.set_ylabel(f"{pace.name}\nper {_every(pace.every)}", fontsize=8)
        axes[-1].set_xlabel("hours from the first send (bars: the busiest interval of each hour)")
        return _svg(fig, f"Sends per interval against each pace, {run.name}")

    def over(run: Run, pace: Pace) -> int:
        return sum(n > pace.limit for n in counted(run, pace).values())

    def waited(run: Run, pace: Pace) -> str:
        waits = [
            leaves - at
            for leaves, at, action, channel in run.leaves
            if pace.name in (action, channel) and leaves > at
        ]
        return f"{max(waits) / 60_000:,.1f} min" if waits else "-"

    rows: list[tuple[str, Callable[[Run], Any]]] = []
    for pace in paces.values():
        rows += [
            (
                f"{pace.name}: busiest interval",
                lambda r, p=pace: max(counted(r, p).values(), default=0),
            ),
            (f"{pace.name}: intervals over {pace.limit}", lambda r, p=pace: over(r, p)),
            (
                f"{pace.name}: sent later (send_at)",
                lambda r, p=pace: sum(
                    1 for lv, at, a, c in r.leaves if p.name in (a, c) and lv > at
                ),
            ),
            (f"{pace.name}: longest wait", lambda r, p=pace: waited(r, p)),
        ]
    for budget in budgets.values():
        rows.append(
            (
                f"{budget.name}: busiest period (of {budget.limit})",
                lambda r, b=budget: _busiest(r, b),
            )
        )
    for outcome in ("paced_out", "over_budget"):
        rows.append((outcome, lambda r, o=outcome: r.outcomes[o]))
    return (
        "Capacity: sends against each pace and budget",
        "For each pace of the policy's capacity, the busiest interval of each hour against its "
        "rate (the dashed line), by when each action may leave (its send_at, else when it was "
        "decided); the table adds each budget's busiest period, and the decisions capacity "
        "refused.",
        [chart(r) for r in runs] if shown else [],
        _compared(runs, "sends", rows),
    )


def _busiest(run: Run, budget: Budget) -> int:
    counts: Counter[int] = Counter()
    for leaves, _, action, channel in run.leaves:
        category = run.policy.actions[action].category if action in run.policy.actions else ""
        period = budget.period.of(leaves)
        if period is not None and budget.counts(action, channel, category):
            counts[period] += 1
    return max(counts.values(), default=0)


def _every(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def _quiet_text(run: Run) -> str:
    quiet = run.policy.quiet_hours
    if quiet is None:
        return f"{run.name}: none"
    told = f"{run.name}: {_clock(quiet.start)}-{_clock(quiet.end)}"
    told += "".join(f", {c} {_clock(s)}-{_clock(e)}" for c, (s, e) in quiet.channels.items())
    exempt = sorted(quiet.except_channels | quiet.except_categories)
    return told + (f", not on {', '.join(exempt)}" if exempt else "")


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _delays(runs: Sequence[Run]) -> Section:
    bins = [name for _, name in DELAY_BINS] + [DELAY_LAST]
    rules = sorted({rule for r in runs for rule in r.delays})
    top = max((sum(r.delays[rule][b] for rule in r.delays) for r in runs for b in bins), default=1)

    def chart(run: Run) -> str:
        fig = Figure(figsize=(5.2, 2.6))
        ax = fig.add_subplot()
        bottom = [0] * len(bins)
        for n, rule in enumerate(rules):
            counts = [run.delays.get(rule, {}).get(b, 0) for b in bins]
            ax.bar(bins, counts, bottom=bottom, color=COLOURS[n % len(COLOURS)], label=rule)
            bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
        ax.set_ylim(0, top * 1.1 or 1)
        ax.set_xlabel("how long a deferred decision waited")
        ax.set_ylabel("decisions deferred")
        if rules:
            ax.legend(fontsize=7, frameon=False)
        return _svg(fig, f"Deferral delays, {run.name}")

    rows: list[tuple[str, Callable[[Run], Any]]] = [
        (b, lambda r, b=b: sum(c[b] for c in r.delays.values())) for b in bins
    ]
    for rule in rules:
        rows.append((f"{rule}: deferred", lambda r, k=rule: len(r.delay_hours.get(k, []))))
        rows.append((f"{rule}: median wait", lambda r, k=rule: _median(r.delay_hours.get(k))))
        rows.append((f"{rule}: longest wait", lambda r, k=rule: _longest(r.delay_hours.get(k))))
    return (
        "Deferral delays",
        "Decisions deferred (to the end of quiet hours, or to a cap's free slot), by how long "
        "they waited until they were decided again.",
        [chart(r) for r in runs],
        _compared(runs, "deferred", rows),
    )


def _median(hours: list[float] | None) -> str:
    return "-" if not hours else f"{statistics.median(hours):.1f}h"


def _longest(hours: list[float] | None) -> str:
    return "-" if not hours else f"{max(hours):.1f}h"


def _lift(runs: Sequence[Run]) -> Section | None:
    measured = [r for r in runs if r.lift]
    if not measured:
        return None
    every = sorted({a for r in measured for a in r.lift or {}})
    actions = [
        a for a in every if any((_result(r, a) or {}).get("absolute") is not None for r in runs)
    ]
    unmeasured = [a for a in every if a not in actions]

    def chart(run: Run) -> str:
        fig = Figure(figsize=(5.2, 0.45 * len(actions) + 1.0))
        ax = fig.add_subplot()
        lifts = run.lift or {}
        for y, action in enumerate(actions[::-1]):
            result = lifts.get(action)
            if result is None or result["absolute"] is None:
                ax.text(0, y, "nothing to compare", va="center", ha="center", color="#777")
                continue
            low, high = result["absolute_95"]
            point = result["absolute"] * 100
            ax.errorbar(
                point,
                y,
                xerr=[[point - low * 100], [high * 100 - point]],
                fmt="o",
                color=COLOURS[0] if result["significant"] else COLOURS[5],
                capsize=4,
            )
        ax.axvline(0, color="#444", linewidth=0.8)
        ax.set_yticks(range(len(actions)), actions[::-1])
        ax.set_ylim(-0.7, len(actions) - 0.3)
        ax.set_xlabel("lift: sent less held-out conversion rate, points (95% interval)")
        return _svg(fig, f"Conversion lift by action, {run.name}")

    rows: list[tuple[str, Callable[[Run], Any]]] = []
    for action in actions:
        rows += [
            (f"{action}: sent", lambda r, a=action: _who(r, a, "sent")),
            (f"{action}: sent rate", lambda r, a=action: _rate(r, a, "rate_sent")),
            (f"{action}: held out", lambda r, a=action: _who(r, a, "held_out")),
            (f"{action}: held-out rate", lambda r, a=action: _rate(r, a, "rate_held_out")),
            (f"{action}: lift (95%)", lambda r, a=action: _lift_text(r, a)),
        ]
    nothing = (
        f" No customer was held out from {', '.join(unmeasured)}: nothing to compare."
        if unmeasured
        else ""
    )
    return (
        "Conversions and lift",
        "Conversion rates of the customers sent and held out, per action the policy "
        "measures, and the lift with its 95% interval (blue: the interval excludes 0)." + nothing,
        [
            chart(r) if r.lift else "<p>this replay's policy measures no conversions</p>"
            for r in runs
        ],
        _compared(runs, "customers", rows, changes=False),
    )


def _learning(runs: Sequence[Run]) -> Section | None:
    learned = [r for r in runs if r.estimates or r.rewards]
    if not learned:
        return None

    def chart(run: Run) -> str:
        fig = Figure(figsize=(5.2, 6.9 if run.population else 4.6))
        arms, lift, *pooled = fig.subplots(3 if run.population else 2, 1)
        for n, (arm, days) in enumerate(sorted(run.estimates.items())):
            shown = sorted(days)
            arms.plot(
                range(len(shown)),
                [days[d][0] / days[d][1] for d in shown],
                marker=".",
                color=COLOURS[n % len(COLOURS)],
                label=arm,
            )
            arms.set_xticks(range(len(shown)), [d[5:] for d in shown], rotation=60, fontsize=7)
        arms.set_ylabel("mean estimate per send")
        arms.set_title("each arm's estimate, learning customers", fontsize=9)
        if run.estimates:
            arms.legend(fontsize=7, frameon=False)
        days = sorted({d for group in run.rewards.values() for d in group})
        for n, group in enumerate(("learning", "control")):
            tallies = run.rewards.get(group, {})
            shown = [d for d in days if d in tallies]
            lift.plot(
                [days.index(d) for d in shown],
                [tallies[d][0] / tallies[d][1] for d in shown],
                marker=".",
                color=COLOURS[n],
                label=group if group == "learning" else "control (static policy)",
            )
        lift.set_xticks(range(len(days)), [d[5:] for d in days], rotation=60, fontsize=7)
        lift.set_ylabel("reward per send")
        lift.set_title("what sends earned, by the day they were sent", fontsize=9)
        if run.rewards:
            lift.legend(fontsize=7, frameon=False)
        if pooled:
            _population_chart(pooled[0], run)
        return _svg(fig, f"Learning, {run.name}")

    rows: list[tuple[str, Callable[[Run], Any]]] = [
        ("learning: trials scored", lambda r: _trials(r, "learning")),
        ("learning: reward per send", lambda r: _per_send(r, "learning")),
        ("control: trials scored", lambda r: _trials(r, "control")),
        ("control: reward per send", lambda r: _per_send(r, "control")),
        ("learning's lift (95%)", _learning_lift),
        ("choices that explored", _explored),
        ("population model: versions used", _versions),
    ]
    return (
        "Learning",
        "First, each arm's mean estimate over the learning customers' decisions, day by day "
        "(what learning believed); then what the sends of each group earned, by the day they "
        "were sent (trials scored once their window closed): the learning customers against the "
        "control share, decided by the static policy; with a population model, last, what each "
        "of its versions said of each arm (within each split), the prior every customer's own "
        "evidence is shrunk toward.",
        [chart(r) if r in learned else "<p>this replay's policy does not learn</p>" for r in runs],
        _compared(runs, "learning", rows, changes=False),
    )


def _population_chart(axes: Any, run: Run) -> None:
    versions = sorted({v for arm in run.population.values() for v in arm})
    for n, (arm, said) in enumerate(sorted(run.population.items())):
        shown = [v for v in versions if v in said]
        axes.plot(
            [versions.index(v) for v in shown],
            [said[v] for v in shown],
            marker=".",
            linestyle=("-", "--", ":")[n // len(COLOURS) % 3],
            color=COLOURS[n % len(COLOURS)],
            label=arm,
        )
    axes.set_xticks(range(len(versions)), [v[5:10] for v in versions], rotation=60, fontsize=7)
    axes.set_ylabel("population's estimate")
    axes.set_title("each arm by the population model's versions", fontsize=9)
    axes.legend(fontsize=6, frameon=False)


def _versions(run: Run) -> str:
    versions = sorted({v for arm in run.population.values() for v in arm})
    if not versions:
        return "-"
    return f"{len(versions)}, {versions[0][:10]} to {versions[-1][:10]}"


def _trials(run: Run, group: str) -> int:
    return int(sum(n for _, n in run.rewards.get(group, {}).values()))


def _per_send(run: Run, group: str) -> str:
    tallies = run.rewards.get(group, {}).values()
    trials = sum(n for _, n in tallies)
    return f"{sum(r for r, _ in tallies) / trials:.3f}" if trials else "-"


def _learning_lift(run: Run) -> str:
    result = run.summary.get("learning", {}).get("lift")
    if result is None or result["absolute"] is None:
        return "-"
    low, high = result["absolute_95"]
    return f"{result['absolute']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _explored(run: Run) -> str:
    explored = run.summary.get("learning", {}).get("explored")
    return "-" if explored is None else f"{explored:.1%}"


def _result(run: Run, action: str) -> dict[str, Any] | None:
    return (run.lift or {}).get(action)


def _who(run: Run, action: str, group: str) -> Any:
    result = _result(run, action)
    if result is None:
        return "-"
    who = result["customers"]
    return f"{who[group]:,} ({who[group + '_converted']:,} converted)"


def _rate(run: Run, action: str, key: str) -> str:
    result = _result(run, action)
    return "-" if result is None or result[key] is None else f"{result[key]:.1%}"


def _lift_text(run: Run, action: str) -> str:
    result = _result(run, action)
    if result is None or result["absolute"] is None:
        return "-"
    low, high = result["absolute_95"]
    return f"{result['absolute'] * 100:+.1f} pts [{low * 100:+.1f}, {high * 100:+.1f}]"


def _compared(
    runs: Sequence[Run],
    unit: str,
    rows: list[tuple[str, Callable[[Run], Any]]],
    changes: bool = True,
) -> Table:
    """The numbers of each run, and with two runs of whole numbers their change."""
    heads = [unit, *(r.name for r in runs)]
    both = len(runs) == 2 and changes
    if both:
        heads.append("change")
    table = []
    for label, value in rows:
        values = [value(r) for r in runs]
        cells = [label, *(f"{v:,}" if isinstance(v, int) else str(v) for v in values)]
        if both:
            a, b = values
            cells.append(_change(a, b))
        table.append(cells)
    return heads, table


def _change(before: Any, after: Any) -> str:
    if not (isinstance(before, int) and isinstance(after, int)):
        return ""
    return f"{after - before:+,}" if after != before else "0"


def _svg(fig: Figure, title: str) -> str:
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Title": title})
    text = buffer.getvalue()
    svg = METADATA.sub("", text[text.index("<svg") :])  # the writer's RDF: links, no content
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(title)}" ', 1)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1500px; color: #222;
       padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
p.what { color: #555; margin-top: 0.2rem; }
.section { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.chart { flex: 0 0 auto; }
.chart h3 { font-size: 0.85rem; font-weight: normal; color: #555; margin: 0; }
.chart svg { width: 440px; height: auto; }
table { border-collapse: collapse; font-size: 0.8rem; }
td, th { padding: 0.12rem 0.6rem; text-align: right; border-bottom: 1px solid #eee; }
td:first-child, th:first-child { text-align: left; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.1rem 1rem; }
dt { color: #555; }
"""


def _page(runs: Sequence[Run], sections: list[Section]) -> str:
    names = " vs ".join(html.escape(r.name) for r in runs)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{GENERATOR}',
        f"<title>Concierge replay report: {names}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Concierge replay report: {names}</h1>",
        _facts(runs),
    ]
    for title, what, charts, table in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(f'<p class="what">{html.escape(what)}</p>')
        parts.append('<div class="section">')
        for run, chart in zip(runs, charts, strict=True):
            parts.append(f'<div class="chart"><h3>{html.escape(run.name)}</h3>{chart}</div>')
        parts.append(_table(table))
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _facts(runs: Sequence[Run]) -> str:
    items = []
    for run in runs:
        s = run.summary
        pending = s.get("pending_at_end", {})
        told = (
            f"policy {s.get('policy_version', '?')}; {s.get('events_in', 0):,} records read, "
            f"{s.get('dead_letters', 0):,} dead letters; "
            f"{sum(s.get('decisions', {}).values()):,} decisions, "
            f"{sum(s.get('actions', {}).values()):,} actions; event time ends "
            f"{pending.get('at') or '?'}"
        )
        waiting = sum(pending.get("timers", {}).values()) + sum(
            pending.get("decisions", {}).values()
        )
        if waiting:
            told += f" with {waiting:,} timers and decisions still pending"
        items.append(f"<dt>{html.escape(str(run.path))}</dt><dd>{html.escape(told)}</dd>")
    return f"<dl>{''.join(items)}</dl>"


def _table(table: Table) -> str:
    heads, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
