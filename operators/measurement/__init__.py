"""Measurement: who is held out, which decisions a conversion converts, and the lift that
sending adds, with its intervals."""
