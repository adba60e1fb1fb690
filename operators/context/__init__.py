"""Customer context: what one event changes. Signals (text, counting windows, absences, dates),
journey moments and their value with a half-life, attributes, consent, reachability, the
customer's time zone, suppressions, what they were sent and their feedback on it."""
