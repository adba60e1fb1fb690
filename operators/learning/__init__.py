"""Learning from outcomes: of what the rules allow, the channel and template a customer
responds to.

Every guardrail stays a hard rule: learning only orders the choices they leave. A sent
decision is one trial of its channel and template (:mod:`operators.learning.evidence`),
scored when its window closes by the outcomes it got; a customer's scored trials, faded
by a half-life and shrunk toward the prior, estimate what each arm is worth, and the
decision takes the best, or explores (:mod:`operators.learning.choice`). A control share of
customers is decided by the static policy, so what learning adds can be measured.
"""
