import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.model.identifiers import (
    UNKEYED_IDENTITY,
    IdentifierRules,
    IdentityKey,
    NormalCache,
    Rejection,
    canonical_id,
    compile_rules,
    identify_all,
    mask,
    normalise,
)
from tests.hostile import attacks


@pytest.fixture(scope="module")
def rules(policy):
    return policy.identifier_rules


def test_emails_are_trimmed_and_case_folded(rules):
    assert normalise("email", "  Ana@Example.COM ", rules) == "ana@example.com"
    assert normalise("anonymous_id", " a-9 ", rules) == "a-9"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("teſt@example.com", "test@example.com"),  # long s: casefold made it an s
        ("\u212a.ana@example.com", "k.ana@example.com"),  # Kelvin sign: NFC made it a K
        ("straße@example.com", "strasse@example.com"),  # casefold made ß an ss
        ("ı@example.com", "i@example.com"),  # dotless i
        ("İ@example.com", "i@example.com"),
        ("ﬁle@example.com", "file@example.com"),  # a ligature
        ("ａna@example.com", "ana@example.com"),  # fullwidth a
        ("JOSÉ@example.com", "josé@example.com"),  # only ASCII letters are folded
    ],
)
def test_two_mailboxes_that_only_look_alike_stay_two(rules, one, other):
    assert normalise("email", one, rules) != normalise("email", other, rules)


def test_an_address_written_composed_or_decomposed_is_one(rules):
    assert normalise("email", "Jose\u0301@Example.com", rules) == "jos\u00e9@example.com"
    assert normalise("email", "W\u030a@x.com", rules) == normalise("email", "\u1e98@x.com", rules)


@attacks(500)
@given(st.text(min_size=1, max_size=40))
def test_an_email_folds_ascii_case_and_composes_and_nothing_else(value):
    """No character of the normal form is an ASCII one that was not in the address as
    written (an ASCII capital lower-cased counts as itself); the form is its own form."""
    rules = IdentifierRules()
    normal = normalise("email", value, rules)
    if isinstance(normal, Rejection):
        return
    written = iter(ch.lower() for ch in value.strip() if ch < "\x80")
    assert all(any(ch == was for was in written) for ch in normal if ch < "\x80")
    assert normalise("email", normal, rules) == normal
    assert normalise("email", value.upper() if value.isascii() else value, rules) == normal


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+34 600 111 222", None, "+34600111222"),
        ("600 11 12 22", "ES", "+34600111222"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+1 415 555 2671", "ES", "+14155552671"),
    ],
)
def test_phones_become_e164(rules, raw, region, e164):
    assert normalise("phone", raw, rules, region) == e164


def test_the_policy_region_is_the_fallback_for_national_numbers():
    rules = compile_rules({}, "ES")
    assert normalise("phone", "600111222", rules) == "+34600111222"
    assert normalise("phone", "600111222", compile_rules({}, None)) is Rejection.INVALID


def test_the_reference_blocked_values_never_count(rules):
    assert normalise("email", "TEST@test.com", rules) is Rejection.BLOCKED
    assert normalise("email", "NoReply@shop.example", rules) is Rejection.BLOCKED
    assert normalise("email", "noreply.fan@shop.example", rules) == "noreply.fan@shop.example"
    assert normalise("phone", "0000000000", rules, "ES") is Rejection.BLOCKED
    assert normalise("phone", "123-456-7890", rules, "US") is Rejection.BLOCKED
    assert normalise("phone", "   ", rules) is Rejection.EMPTY
    assert normalise("phone", "call me", rules) is Rejection.INVALID


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+1 123 456 7890", None),
        ("+11234567890", "ES"),
        ("001 123 456 7890", "ES"),
        ("(123) 456-7890", "US"),
        ("+1 000 000 0000", None),
    ],
)
def test_a_blocked_phone_is_blocked_with_a_country_code_too(rules, raw, region):
    assert normalise("phone", raw, rules, region) is Rejection.BLOCKED


def test_blocked_phone_patterns_may_be_written_with_separators():
    rules = compile_rules({"blocked": {"phone": ["+34 600-111-222"]}}, None)
    assert normalise("phone", "+34600111222", rules) is Rejection.BLOCKED
    assert normalise("phone", "600 111 222", rules, "ES") is Rejection.BLOCKED
    assert normalise("phone", "+34600111223", rules) == "+34600111223"


def test_an_event_keeps_its_usable_identifiers_and_names_the_rest(rules):
    usable, rejected = identify_all(
        {"email": "test@test.com", "phone": "", "anonymous_id": "a-1"}, rules, UNKEYED_IDENTITY
    )
    assert usable == UNKEYED_IDENTITY.identify_normalised({"anonymous_id": "a-1"})
    assert sorted(rejected) == [("email", Rejection.BLOCKED), ("phone", Rejection.EMPTY)]


def test_the_normal_cache_gives_what_normalising_gives_and_stays_bounded(rules):
    cache = NormalCache(size=3)
    events = [
        {"email": " Ana@Example.COM", "phone": "600 111 223"},
        {"email": "test@test.com", "phone": ""},
        {"phone": "600 111 223", "anonymous_id": "a-1"},
        {"email": " Ana@Example.COM", "phone": "+1 123 456 7890"},
    ] * 3
    for identifiers in events:
        for region in (None, "ES"):
            cached = identify_all(identifiers, rules, UNKEYED_IDENTITY, region, cache)
            assert cached == identify_all(identifiers, rules, UNKEYED_IDENTITY, region)
            assert len(cache._forms) <= 3


def test_an_identifier_goes_on_as_a_keyed_digest_a_masked_form_and_a_name(rules):
    mine, theirs = IdentityKey(b"k" * 32), IdentityKey(b"j" * 32)
    usable, _ = identify_all(
        {"email": " Ana@Example.COM", "phone": "600 111 222"}, rules, mine, "ES"
    )
    email, phone = usable["email"], usable["phone"]
    assert email.masked == "a***@example.com" and phone.masked == "+34******22"
    assert email.name == canonical_id("email", "ana@example.com")
    expected = hmac.new(b"k" * 32, b"email:ana@example.com", hashlib.sha256).hexdigest()[:32]
    assert email.digest == expected
    assert "ana" not in repr(usable) and "600111222" not in repr(usable)
    assert theirs.identify("email", "ana@example.com").digest != email.digest
    assert mine.check != theirs.check


def test_identifier_strength_follows_the_policy_order(rules):
    assert rules.rank("customer_id") < rules.rank("email") < rules.rank("anonymous_id")
    assert IdentifierRules().rank("unknown") == len(IdentifierRules().order)


def test_masked_values_do_not_reveal_the_identifier():
    assert mask("email", "ana.garcia@example.com") == "a***@example.com"
    assert "600111" not in mask("phone", "+34600111222")
    assert mask("loyalty_id", "L00001234") == "L0***34"
