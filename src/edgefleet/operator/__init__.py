"""edgefleet.operator."""
