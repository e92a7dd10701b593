"""training stage of UAE."""
