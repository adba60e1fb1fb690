"""Decisions: for the moments open now, whether to act, with which action, on which channel,
and the guardrails that hold an action back: eligibility, frequency caps, cooldowns, fatigue,
quiet hours (consent, reachability and suppressions are the context's)."""
