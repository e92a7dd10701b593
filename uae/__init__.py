"""UAE: Utility-Aligned Embeddings. Dense retrievers trained to rank passages the way an LLM uses them."""

__version__ = "0.1.0"
