import pytest

from operators.policy.load import PolicyError, load_policy


def test_reference_policy_loads_unchanged_with_on_as_a_key(policy, reference_policy_path):
    assert policy.channels == ("email", "sms", "push", "in_app", "agent")
    repeat = policy.counting_by_type["product_view"][0]
    assert repeat.name == "repeat_product_interest"
    assert repeat.group_by == ("properties", "product_id")
    assert (repeat.at_least, repeat.within) == (3, 7 * 86_400_000)
    absences = {a.name: a for a in policy.absence_signals}
    assert absences["checkout_abandoned"].on == {"checkout_started"}
    assert absences["checkout_abandoned"].unless == {"purchase"}
    assert absences["inactive"].on is None and absences["inactive"].unless is None
    assert policy.text_signals[0].on == {"support_contact", "complaint"}
    assert policy.actions["product_nudge"].consent == "marketing"
    assert policy.actions["help_offer"].consent is None
    assert policy.actions["empathy_handoff"].priority == 1000
    assert policy.default_timezone == "Europe/Madrid"


def test_policy_full_loads_unchanged_with_every_section_given_its_meaning():
    """``concierge validate`` passes it without a warning, and the copy in ``flows/`` is the
    spec's, with comments of its own (what the policy leaves to the defaults)."""
    from pathlib import Path

    from tests.conftest import FULL_POLICY, SPEC_FULL_POLICY
    from tests.scenarios.conftest import concierge

    shipped = Path(__file__).parents[3] / "flows" / "policy_full.yaml"
    if SPEC_FULL_POLICY.is_file():
        spec = SPEC_FULL_POLICY.read_text().splitlines()
        ours = shipped.read_text().splitlines()
        added = {line for line in ours if line.startswith("# ")} - set(spec)
        assert [line for line in ours if line not in added] == spec, "copy it again"
    policy = load_policy(FULL_POLICY.read_text())
    assert policy.attributes and policy.eligibility_by_action and policy.reachability
    assert policy.fatigue[0].name == "ignoring-marketing"
    assert policy.holdouts is not None and policy.conversions_by_type
    assert policy.quiet_hours.release_over and policy.quiet_hours.channels
    (renewal,) = policy.date_signals
    assert (renewal.on, renewal.at, renewal.before, renewal.unless) == (
        {"renewal_scheduled"},
        ("properties", "renewal_date"),
        30 * 86_400_000,
        {"renewed"},
    )
    checked = concierge("validate", str(FULL_POLICY))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
    assert policy.identifier_rules.retention == 400 * 86_400_000


def test_version_is_a_digest_of_the_text_unless_given(reference_policy_path):
    text = reference_policy_path.read_text()
    assert load_policy(text).version == load_policy(text).version
    assert load_policy(text + "\n# edited\n").version != load_policy(text).version
    assert load_policy("version: v7\n" + text).version == "v7"


def _problems(text):
    with pytest.raises(PolicyError) as caught:
        load_policy(text, "bad.yaml")
    return caught.value.problems


def test_every_bad_field_is_reported_with_its_path_and_line(reference_policy_path):
    text = reference_policy_path.read_text()
    text = text.replace("min_value: 15", "min_value: -1")
    text = text.replace("within: 1h", "within: 1hour")
    text = text.replace("moment: loan_intent", "moment: loan_intnt")
    text = text.replace("channels: [push, email]", "channels: [push, emial]")
    problems = {".".join(map(str, p.path)): p for p in _problems(text)}
    assert set(problems) == {
        "actions.product_nudge.min_value",
        "signals.help_search_friction.within",
        "signals.payment_failed.within",
        "actions.loan_offer.moment",
        "actions.product_nudge.channels.1",
    }
    lines = text.splitlines()
    for path, problem in problems.items():
        assert problem.line is not None
        assert path.split(".")[2] in lines[problem.line - 1]
    assert "emial" in problems["actions.product_nudge.channels.1"].message
    assert "loan_intnt" in problems["actions.loan_offer.moment"].message


def test_a_typo_in_a_field_name_is_reported_on_its_own_line(reference_policy_path):
    text = reference_policy_path.read_text().replace("cooldown: 3d", "cooldwon: 3d")
    text = text.replace("defaults:", "defualts:")
    problems = {p.path: p for p in _problems(text)}
    typo = problems[("actions", "product_nudge", "cooldwon")]
    assert "cooldwon" in text.splitlines()[typo.line - 1]
    assert "unknown field" in typo.message
    assert text.splitlines()[problems[("defualts",)].line - 1].startswith("defualts")


def test_every_broken_reference_is_reported_even_beside_malformed_entries(
    reference_policy_path,
):
    text = reference_policy_path.read_text()
    text = text.replace(
        "stuck:           {from: [help_search_friction, payment_failed], "
        "value: 80, half_life: 30m}",
        "stuck: 5",
    )
    text = text.replace("moment: loan_intent", "moment: loan_intnt")
    text = text.replace("category: service", "category: servce")
    paths = {p.path for p in _problems(text)}
    assert ("moments", "stuck") in paths
    assert ("actions", "loan_offer", "moment") in paths
    assert ("actions", "help_offer", "category") in paths


def test_a_section_of_the_wrong_shape_gives_one_error_not_a_cascade(reference_policy_path):
    text = reference_policy_path.read_text().replace(
        "channels: [email, sms, push, in_app, agent]", "channels: email"
    )
    problems = _problems(text)
    assert [p.path for p in problems if p.path[:1] == ("channels",)] == [("channels",)]
    assert not any("(channels: a, e" in p.message for p in problems)


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        (
            "value: 40, half_life: 2d",
            "value: .nan, half_life: 2d",
            ("moments", "browse_intent", "value"),
        ),
        (
            "value: 40, half_life: 2d",
            "value: .inf, half_life: 2d",
            ("moments", "browse_intent", "value"),
        ),
        (
            "value: 40, half_life: 2d",
            "value: 1e400, half_life: 2d",
            ("moments", "browse_intent", "value"),
        ),
        (
            "value: 40, half_life: 2d",
            "value: 40, half_life: 99999999d",
            ("moments", "browse_intent", "half_life"),
        ),
        ("after: 180d", "after: 3000000d", ("signals", "gone_quiet_after_test_drive", "after")),
    ],
)
def test_numbers_and_durations_that_would_break_the_engine_are_refused(
    reference_policy_path, old, new, path
):
    text = reference_policy_path.read_text().replace(old, new, 1)
    assert path in {p.path for p in _problems(text)}


def test_yaml_syntax_errors_name_their_line():
    (problem,) = _problems("channels: [email\nsignals: {}\n")
    assert problem.line is not None and "not valid YAML" in problem.message


def test_unknown_time_zone_and_moment_source_are_reported(reference_policy_path):
    text = reference_policy_path.read_text()
    text = text.replace("timezone: Europe/Madrid", "timezone: Europe/Atlantis")
    text = text.replace("from: repeat_product_interest", "from: repeat_interest")
    messages = {".".join(map(str, p.path)): p.message for p in _problems(text)}
    assert "Europe/Atlantis" in messages["defaults.timezone"]
    assert "repeat_interest" in messages["moments.browse_intent.from"]


def test_ingest_limits_and_event_types_are_configurable(reference_policy_path):
    text = reference_policy_path.read_text() + (
        "\nevent_types: [product_view, purchase]\n"
        "ingest: {max_record_bytes: 1024, max_future_skew: 1d}\n"
    )
    policy = load_policy(text)
    assert policy.event_types == {"product_view", "purchase"}
    assert policy.max_record_bytes == 1024
    assert policy.max_future_skew == 86_400_000


def test_lateness_and_eviction_are_configurable_with_safe_defaults(reference_policy_path, policy):
    assert policy.allowed_lateness == 86_400_000 and not policy.dead_letter_late
    assert policy.evict_idle_after == 365 * 86_400_000
    text = reference_policy_path.read_text() + (
        "\ningest: {allowed_lateness: 5m, late_events: dead_letter}\n"
        "customers: {evict_idle_after: 90d}\n"
    )
    custom = load_policy(text)
    assert custom.allowed_lateness == 300_000 and custom.dead_letter_late
    assert custom.evict_idle_after == 90 * 86_400_000


def test_phrases_without_words_and_twin_suppression_names_are_refused(reference_policy_path):
    text = (
        reference_policy_path.read_text()
        .replace("funeral, terminal", '"!!", terminal')
        .replace("name: after-purchase", "name: after-complaint")
        + "\ningest: {late_events: drop}\n"
    )
    paths = {".".join(map(str, p.path)) for p in _problems(text)}
    assert {
        "signals.sensitive_circumstance.matches_any.4",
        "suppressions.1.name",
        "ingest.late_events",
    } <= paths


def test_the_reference_suppressions_are_compiled_by_what_starts_them(policy):
    assert [s.name for s in policy.suppressions_by_event["purchase"]] == ["after-purchase"]
    assert policy.suppressions["after-purchase"].same == ("properties", "product_id")
    assert [s.name for s in policy.suppressions_by_signal["sensitive_circumstance"]] == [
        "sensitive"
    ]
    assert "unsubscribed" not in policy.suppressions  # it revokes consent; it suppresses nothing
