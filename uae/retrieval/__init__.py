"""retrieval stage of UAE."""
