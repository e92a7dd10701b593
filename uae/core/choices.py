"""The names a setting may take where several layers must agree on them, in one torch-free place.

The schema (uae/core/schema.py) checks configs against them before anything heavy loads, the modules
that act on them (uae/retrieval/runtime.py, uae/llm/engines/) dispatch on them, and the command lines
(``python -m uae.search --runtime``, benchmarks/latency.py) offer them in ``--help`` without importing torch.
"""

from __future__ import annotations

from typing import Literal, get_args

# model.encoder.runtime: what runs the encoder at inference (uae/retrieval/runtime.py)
Runtime = Literal["torch", "onnx", "onnx-int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)

# passage embeddings in shards (uae/retrieval/shards.py, python -m uae.encode): what encodes them, and how they are stored
ShardEngine = Literal["local", "processes", "lightning"]
SHARD_ENGINES: tuple[str, ...] = get_args(ShardEngine)
ShardDtype = Literal["float32", "float16"]
SHARD_DTYPES: tuple[str, ...] = get_args(ShardDtype)

# llm.engine and llm.compute_type: where and in what precision the teacher runs (uae/llm/engines/)
Engine = Literal["hf", "ctranslate2", "vllm", "llamacpp"]
ENGINES: tuple[str, ...] = get_args(Engine)
ComputeType = Literal[
    "auto", "float32", "bfloat16", "float16", "int8_float32", "int8", "int8_bfloat16", "int8_float16", "int16", "gguf"
]
COMPUTE_TYPES: tuple[str, ...] = get_args(ComputeType)

# reader.answerer.engine: where the reader generates (uae/llm/reader.py)
ReaderEngine = Literal["hf", "llamacpp"]
READER_ENGINES: tuple[str, ...] = get_args(ReaderEngine)


def engine_spec(engine: str, compute_type: str) -> dict[str, str]:
    """What an engine adds to a utility table's spec: nothing for the reference and for CTranslate2 in
    float32, whose utilities a test proves equal to the reference's on committed candidates
    (tests/llm/test_engines.py), so the two share tables; the engine and type otherwise."""
    if engine == "hf" or (engine == "ctranslate2" and compute_type == "float32"):
        return {}
    return {"engine": engine, "compute_type": compute_type}
