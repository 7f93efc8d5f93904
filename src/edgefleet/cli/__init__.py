"""edgefleet.cli."""
