"""Hostile policies are refused with a message naming the limit, before they cost anything."""

from __future__ import annotations

import pytest

from operators.policy.limits import MAX_DEPTH, MAX_ITEMS, MAX_POLICY_BYTES, MAX_WORDS
from operators.policy.load import PolicyError, load_policy


def _refusal(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, "hostile.yaml")
    (problem,) = caught.value.problems
    return str(problem)


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    names = "abcdefghijklmnopqrstuvwxyz"
    for n in range(1, levels):
        text += f"{names[n]}: &{names[n]} [" + ", ".join(["*" + names[n - 1]] * 9) + "]\n"
    return text


def test_an_alias_bomb_is_refused_without_expanding_it():
    assert "values once its YAML aliases are expanded" in _refusal(billion_laughs())


def test_an_alias_bomb_aliased_into_channels_is_refused(reference_policy_path):
    text = reference_policy_path.read_text()
    text = billion_laughs().replace("a: &a", "lol: &a") + text.replace(
        "channels: [email, sms, push, in_app, agent]", "channels: *i"
    )
    assert "aliases" in _refusal(text)


def test_a_few_aliases_are_fine(reference_policy_path):
    text = reference_policy_path.read_text().replace(
        "channels: [email, sms, push, in_app, agent]",
        "channels: &all [email, sms, push, in_app, agent]",
    )
    text = text.replace("except_channels: [in_app, agent]", "except_channels: *all")
    assert load_policy(text).quiet_hours is not None


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000 + "\n",
        "a: " + "{b: " * 2000 + "c" + "}" * 2000 + "\n",
        "".join(" " * depth + "k:\n" for depth in range(400)),
        "- " * 3000 + "x\n",
    ],
    ids=["flow-lists", "flow-maps", "block-maps", "block-lists"],
)
def test_nesting_thousands_deep_is_refused_with_its_line(text):
    message = _refusal(text)
    assert f"nested more than {MAX_DEPTH} levels deep" in message
    assert "(line " in message


def test_a_huge_file_is_refused_by_its_size():
    message = _refusal("# " + "x" * (MAX_POLICY_BYTES + 1) + "\n")
    assert f"at most {MAX_POLICY_BYTES:,} bytes" in message


def test_too_many_words_are_refused_before_parsing(reference_policy_path):
    phrases = ", ".join(f"w{n}" for n in range(MAX_WORDS + 1))
    text = reference_policy_path.read_text().replace(
        "matches_any: [death,", f"matches_any: [{phrases}, death,"
    )
    assert f"at most {MAX_WORDS:,}" in _refusal(text)


def test_comments_do_not_count_as_words(reference_policy_path):
    comments = "".join(f"# note {n}: a b c d e f\n" for n in range(MAX_WORDS))
    assert load_policy(comments + reference_policy_path.read_text()).channels


def test_a_list_over_the_item_limit_names_its_field(reference_policy_path):
    phrases = ", ".join(f"w{n}" for n in range(MAX_ITEMS + 1))
    text = reference_policy_path.read_text().replace(
        "matches_any: [death,", f"matches_any: [{phrases}, death,"
    )
    message = _refusal(text)
    assert message.startswith("signals.sensitive_circumstance.matches_any (line ")
    assert f"at most {MAX_ITEMS:,}" in message


@pytest.mark.parametrize("zone", ["Europe", "America", "Etc", "A" * 300, "../../etc/passwd", ""])
def test_a_time_zone_that_is_a_folder_or_nonsense_names_the_field(reference_policy_path, zone):
    text = reference_policy_path.read_text().replace("Europe/Madrid", f'"{zone}"')
    message = _refusal(text)
    assert message.startswith("defaults.timezone (line ")
