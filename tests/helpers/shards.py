"""What the tests of embedding shards share (tests/retrieval/test_shards.py, test_shard_engines.py, and the killed
encoding those start): a corpus of many lengths, its shard size, and the tiny encoder with short passages."""

from __future__ import annotations

from pathlib import Path

from uae.retrieval.encoder import DualEncoder

# 37 passages of many lengths: shards of 8 are 5, the last one of 5 rows
TEXTS = [f"Passage {i}: " + " ".join(f"word{(i * j) % 17}" for j in range(i % 11 + 1)) for i in range(37)]
SHARD_SIZE = 8
ALL_SHARDS = tuple(range(5))


def tiny_encoder(path: Path, cache: Path, **settings: object) -> DualEncoder:
    """The tiny random BERT at ``path`` (tests/conftest.py's tiny_encoder_dir), passages cut at 32 tokens."""
    return DualEncoder("tiny-bert", cache_dir=cache, local_path=path, passage_max_length=32, **settings).eval()
