"""edgefleet.edge_reconciler."""
