"""Pure decisions: no I/O, no third-party clients; everything is a function of its arguments and ``now``."""
