"""What ``concierge run`` declares in its metrics before anything happens: which build runs
with which policy, and every labelled counter at zero for each value it can take."""

import orjson
from prometheus_client import REGISTRY

from flows import package_version
from flows.journey import JourneyConfig, JourneyLogic
from flows.metrics import declare_build, declare_labels, held_back_rules
from operators.identity.resolution import ForCustomer
from operators.model.records import DeadLetterReason, Decision, Outcome
from operators.policy.load import load_policy
from tests.conftest import FULL_POLICY
from tests.flows.test_journey_step import generated_customers


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


def test_build_info_names_the_version_concierge_prints_and_the_policy_version(policy):
    declare_build(policy, package_version())
    labels = {"version": package_version(), "policy_version": policy.version}
    assert package_version() not in ("", "unknown")
    assert value("concierge_build_info", **labels) == 1


def test_every_outcome_channel_and_dead_letter_reason_starts_at_zero(policy):
    declare_labels(policy)
    for outcome in Outcome:
        assert value("concierge_decisions_total", outcome=outcome.value) is not None, outcome
    for channel in policy.channels:
        assert value("concierge_actions_total", channel=channel) is not None, channel
        assert value("concierge_records_out_total", stream=f"actions.{channel}") is not None
    for reason in DeadLetterReason:
        assert value("concierge_dead_letters_total", reason=reason.value) is not None, reason
    for client in ("consumer", "producer"):
        assert value("concierge_kafka_errors_total", client=client) is not None
    assert value("concierge_events_in_total", type="other") is not None
    assert value("concierge_identity_resolved_total", known="false") is not None
    for outcome, rule in [("capped", "sms-daily"), ("suppressed", "after-purchase")]:
        assert value("concierge_decisions_held_back_total", outcome=outcome, rule=rule) is not None


def test_the_held_back_rules_declared_are_the_ones_decisions_carry(policy):
    """Every (outcome, rule) a decision of the generated stream is counted under is one of
    those declared at zero, for the reference policy and for policy-full (fatigue,
    eligibility)."""
    full = load_policy(FULL_POLICY.read_text(), str(FULL_POLICY))
    for each in (policy, full):
        declared = set(held_back_rules(each))
        config = JourneyConfig(each, wall_clock_timers=False)
        seen = set()
        for customer, events in generated_customers(each, customers=60, events=4000).items():
            out, _ = JourneyLogic(config, None).on_batch([ForCustomer(customer, e) for e in events])
            seen.update(
                (e.output.outcome.value, e.output.rule)
                for e in out
                if isinstance(e.output, Decision)
                and e.output.rule is not None
                and e.output.outcome is not Outcome.HELD_OUT
            )
        assert seen, "the stream holds something back"
        assert seen <= declared, seen - declared


def test_timers_pending_after_a_replay_is_what_it_left_pending(policy, tmp_path):
    """Through the whole flow (merges hand timers from one profile to another, erasures and
    evictions drop them), the gauge ends at what replay's pending_at_end lists."""
    from flows.commands.generator import Generator
    from flows.replay import replay
    from tests.flows.test_journey_step import gauge, restart_gauge

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(Generator(300, 5).events(6000)) + b"\n")
    restart_gauge()
    summary = replay(policy, events, tmp_path / "out")
    assert summary["audit"] > 0, "profiles were merged"
    left = summary["pending_at_end"]
    assert gauge() == (sum(left["timers"].values()), sum(left["decisions"].values()))
    assert gauge()[0] > 0 and gauge()[1] > 0


def test_learnings_arms_trials_and_outcomes_start_at_zero():
    from tests.learning import learning_policy

    declare_labels(learning_policy())
    for how in ("best", "explored", "control"):
        assert (
            value("concierge_learning_choices_total", kind="channel", arm="push", how=how)
            is not None
        )
        assert (
            value("concierge_learning_choices_total", kind="variant", arm="nudge-discount", how=how)
            is not None
        )
    labels = {"action": "nudge", "channel": "email", "template": "nudge-discount"}
    assert value("concierge_learning_trials_total", **labels, group="control") is not None
    assert (
        value("concierge_learning_outcomes_total", **labels, outcome="clicked", group="learning")
        is not None
    )


def test_the_population_models_version_age_and_trials_after_a_replay(tmp_path):
    """The newest version the process has, how old the version the last decision used was,
    and the trials the learner counted: those that closed before that newest version."""
    from flows.replay import replay
    from operators.model.timefmt import format_ms, parse_ms
    from tests.conftest import event_dict, write_jsonl
    from tests.learning import DAY, START, learning_policy

    policy = learning_policy(
        "learning:\n  rewards: {clicked: 1}\n  window: 2h\n  half_life: 30d\n"
        "  explore: 0\n  salt: metrics\n  population: {every: 1d}\n"
    )
    views = [
        event_dict(
            "product_view",
            format_ms(START + day * DAY + 10 * 3_600_000 + n * 60_000),
            {"product_id": "p-1"},
            f"view-{n}-{day}",
            email=f"c{n}@example.com",
        )
        for day in range(5)
        for n in range(10)
    ]
    counted = value("concierge_learning_population_trials_total") or 0.0
    replay(policy, write_jsonl(tmp_path / "events.jsonl", views), tmp_path / "out")

    version = value("concierge_learning_model_version_seconds") * 1000
    assert version == START + 3 * DAY  # what the last day's decisions need, and no further
    decisions = [orjson.loads(line) for line in (tmp_path / "out/decisions.jsonl").open("rb")]
    last = decisions[-1]
    used = parse_ms(last["learning"]["population"]["model"])
    assert parse_ms(last["at"]) - used == value("concierge_learning_model_age_seconds") * 1000
    assert used == START + 3 * DAY  # the last day's decisions use the day before's version
    trials = [orjson.loads(line) for line in (tmp_path / "out/trials.jsonl").open("rb")]
    closed = [t for t in trials if parse_ms(t["at"]) < version]
    assert len(closed) == 30 < len(trials) == 40  # day 3's trials count from version 4 on
    assert value("concierge_learning_population_trials_total") - counted == len(closed)
