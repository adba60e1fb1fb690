"""The commands that work beside the dataflow: the demo, a generated stream, and what reads a
replay's output (explain, diff, report, lift) or asks a running flow to forget a person."""
