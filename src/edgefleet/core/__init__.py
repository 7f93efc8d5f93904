"""Pure decisions: no I/O, no third-party clients. Everything here is a function of its arguments and ``now``."""
