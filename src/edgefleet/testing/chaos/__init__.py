"""The fault-injection suite's fleet (:mod:`~edgefleet.testing.chaos.fleet`) and the invariants every fault is
checked against (:mod:`~edgefleet.testing.chaos.invariants`); the tests are in ``tests/chaos``."""
