"""evaluation stage of UAE."""
