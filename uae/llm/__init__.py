"""llm stage of UAE."""
