"""A Gemma 3 GGUF file (llama.cpp's layout) as a float32 transformers ``Gemma3ForCausalLM`` folder.

Gemma 3 270M, the second teacher, is published on PyPI only as a Q4_K_M GGUF whose Q5_0 blocks
transformers' GGUF loader does not read, so this converter does the work itself, from the ``gguf``
package's reader (:mod:`uae.models.gguf_tensors`). Three things are specific to undoing what llama.cpp's
``convert_hf_to_gguf.py`` did to a Gemma 3 checkpoint, and each is checked by a test that fails if it
is wrong (tests/models/test_gemma3_gguf.py):

* names: llama.cpp's tensor names (``blk.N.attn_q``, ``ffn_norm``, ...) back to transformers' (:data:`BLOCK_NAMES`);
* norms: transformers' Gemma RMSNorm multiplies by ``(1 + w)``, and llama.cpp's converter stores
  ``w + 1`` so that its plain RMSNorm multiplies by the same factor; so every ``*norm.weight`` loses 1
  here (kept as stored, the real 270M scores English at about -19 nats/token instead of -2 to -3);
* the config: the file states sizes, the global RoPE base and the window, but not what llama.cpp
  hard-codes for the architecture (every 6th layer global, local RoPE base 10,000, the 27B's query
  scale); those are taken from the file when a newer converter wrote them, else from the same constants.

The tokenizer comes from transformers' own GGUF tokenizer reader (it rebuilds Gemma's BPE merges from
the vocabulary's order, about a minute for 262,144 tokens on 2 CPU cores). Where the result goes, and
when it is converted again, is :mod:`uae.models.build`'s job.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from uae.core.errors import ModelNotFoundError
from uae.models.gguf_tensors import float_tensors, metadata, open_gguf

__all__ = ["BLOCK_NAMES", "NORM_SHIFT", "convert_gemma3", "gemma3_config", "hf_name"]

log = logging.getLogger(__name__)

ARCHITECTURE = "gemma3"

#: The setting that points the teacher at a folder by hand, for messages (uae.llm.requests.SETTING + local_path).
LLM_SETTING = "llm.scorer.local_path"

#: What llama.cpp's converter added to every Gemma norm weight (``*norm.weight``), taken off here.
NORM_SHIFT = 1.0

#: Fixed by llama.cpp for gemma3 when the file does not say: the local/global layer pattern and the
#: RoPE base of the sliding-window (local) layers.
SLIDING_WINDOW_PATTERN = 6
LOCAL_ROPE_BASE = 10_000.0

_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",  # only in files whose head is not the embedding
}

#: llama.cpp's per-layer tensor names (``blk.N.<name>.weight``) to transformers' (``model.layers.N.<name>.weight``).
BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.weight$")


def hf_name(gguf_name: str) -> str | None:
    """The transformers parameter name for a GGUF tensor name; ``None`` for a name this map lacks."""
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    match = _BLOCK.match(gguf_name)
    if match is None or match.group(2) not in BLOCK_NAMES:
        return None
    return f"model.layers.{match.group(1)}.{BLOCK_NAMES[match.group(2)]}.weight"


def gemma3_config(meta: dict[str, Any], vocab_size: int, tied: bool, where: Path) -> dict[str, Any]:
    """``Gemma3TextConfig`` keyword arguments from the file's ``gemma3.*`` and ``tokenizer.ggml.*`` metadata."""

    def key(name: str) -> Any:
        full = f"{ARCHITECTURE}.{name}"
        if full not in meta:
            raise ModelNotFoundError(
                f"{where} has no {full} in its metadata, which a Gemma 3 GGUF written by llama.cpp has; "
                "the file is damaged or was written by another tool."
            )
        return meta[full]

    layers = int(key("block_count"))
    head_dim = int(key("attention.key_length"))
    if int(meta.get(f"{ARCHITECTURE}.attention.value_length", head_dim)) != head_dim:
        raise ModelNotFoundError(
            f"{where}: key and value head sizes differ, which Gemma3TextConfig cannot express."
        )
    hidden, heads = int(key("embedding_length")), int(key("attention.head_count"))
    full_rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(key("rope.freq_base"))}
    if meta.get(f"{ARCHITECTURE}.rope.scaling.type") == "linear":  # the 4B and larger; not the 270M
        full_rope = {**full_rope, "rope_type": "linear", "factor": float(key("rope.scaling.factor"))}
    config: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": int(key("feed_forward_length")),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": int(key("attention.head_count_kv")),
        "head_dim": head_dim,
        "max_position_embeddings": int(key("context_length")),
        "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon")),
        "sliding_window": int(key("attention.sliding_window")),
        "layer_types": _layer_types(meta.get(f"{ARCHITECTURE}.attention.sliding_window_pattern"), layers),
        "rope_parameters": {
            "full_attention": full_rope,
            "sliding_attention": {
                "rope_type": "default",
                "rope_theta": float(meta.get(f"{ARCHITECTURE}.rope.freq_base_swa", LOCAL_ROPE_BASE)),
            },
        },
        # llama.cpp scales queries by 1/sqrt(head_dim), except for the 27B (62 layers): 1/sqrt(hidden/heads)
        "query_pre_attn_scalar": hidden // heads if layers == 62 else head_dim,
        "final_logit_softcapping": meta.get(f"{ARCHITECTURE}.final_logit_softcapping"),
        "attn_logit_softcapping": meta.get(f"{ARCHITECTURE}.attn_logit_softcapping"),
        "tie_word_embeddings": tied,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
    }
    return config


def _layer_types(pattern: Any, layers: int) -> list[str]:
    """Which layers attend within the window: an int N (every Nth layer global), a per-layer list of
    booleans (True: sliding), or absent (llama.cpp's gemma3 default, N = 6)."""
    if isinstance(pattern, list) and len(pattern) == layers:
        return ["sliding_attention" if bool(p) else "full_attention" for p in pattern]
    n = int(pattern) if isinstance(pattern, (int, float)) and pattern else SLIDING_WINDOW_PATTERN
    return ["full_attention" if (i + 1) % n == 0 else "sliding_attention" for i in range(layers)]


def convert_gemma3(gguf_path: Path, out: Path, model_id: str, install_hint: str) -> None:
    """De-quantise a Gemma 3 GGUF into a float32 ``Gemma3ForCausalLM`` folder (weights, config, tokenizer)."""
    # deferred: start-up speed (torch and transformers take seconds; only a conversion needs them)
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    reader = open_gguf(gguf_path, f"reinstall the package with `{install_hint} --force-reinstall`")
    meta = metadata(reader)
    arch = meta.get("general.architecture")
    if arch != ARCHITECTURE:
        raise ModelNotFoundError(
            f"{gguf_path} holds a {arch!r} model, not {ARCHITECTURE!r}, so it is not {model_id}."
        )
    names = [t.name for t in reader.tensors]
    embedding = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embedding is None:
        raise ModelNotFoundError(f"{gguf_path} has no token_embd.weight tensor: the file is damaged.")
    config = Gemma3TextConfig(
        **gemma3_config(meta, int(embedding.shape[-1]), "output.weight" not in names, gguf_path)
    )
    state = _state_dict(reader, gguf_path)
    with torch.device("meta"):  # no random initialisation: every weight comes from the file
        model = Gemma3ForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ModelNotFoundError(
            f"{gguf_path} does not hold the tensors of a {config.num_hidden_layers}-layer Gemma 3 model "
            f"(missing: {missing[:5]}, unexpected: {unexpected[:5]}); the file is damaged or another model."
        )
    model.tie_weights()
    model.config.name_or_path = model_id
    tokenizer = _tokenizer(gguf_path, config.max_position_embeddings, model_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _state_dict(reader: Any, gguf_path: Path) -> dict[str, Any]:
    """Every tensor de-quantised, renamed, and with llama.cpp's norm shift undone."""
    # deferred: start-up speed
    import torch
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}
    for name, values in tqdm(
        float_tensors(reader), total=len(reader.tensors), desc="de-quantising", disable=None
    ):
        target = hf_name(name)
        if target is None:
            raise ModelNotFoundError(
                f"{gguf_path} holds a tensor {name!r} that Gemma3ForCausalLM has no place for; the file is "
                "not a text-only Gemma 3 model as llama.cpp writes it."
            )
        if name.endswith("norm.weight"):
            values = values - np.float32(NORM_SHIFT)
        state[target] = torch.from_numpy(values)
    return state


def _tokenizer(gguf_path: Path, max_positions: int, model_id: str) -> Any:
    """The tokenizer transformers rebuilds from the file's ``tokenizer.ggml.*`` metadata, its length limit set."""
    from transformers import AutoTokenizer  # deferred: start-up speed

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelNotFoundError(
            f"transformers cannot build the tokenizer of {gguf_path} ({type(exc).__name__}: {exc}); set "
            f"{LLM_SETTING}= to a folder holding {model_id} in Hugging Face format."
        ) from exc
    if not tokenizer.eos_token or not tokenizer.bos_token:
        raise ModelNotFoundError(
            f"The tokenizer read from {gguf_path} has no bos or eos token: the file is damaged."
        )
    tokenizer.model_max_length = max_positions  # the GGUF states none; transformers' default is 1e30
    return tokenizer
