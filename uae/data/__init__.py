"""data stage of UAE."""
