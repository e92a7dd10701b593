"""A tiny Gemma 3 written as llama.cpp writes one: GGUF names, quantised blocks, norm weights stored + 1.

The weights are drawn here in transformers' layout (``nn.Linear`` weights as (out, in)), so a test can
build the same model directly in torch (:func:`reference_model`) and compare it with what the converter
makes of the file. The sizes are chosen so that mistakes cannot hide: the query projection is square
(a transposed copy still loads), the norm weights are far from uniform (a +1 left in does not cancel in
the next norm), layer 1 is global and layer 0 slides over a window shorter than the test text, and the
file holds Q8_0, Q5_0, F16, BF16 and F32 tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS, WINDOW = 64, 2, 1, 32, 96, 2, 4
GLOBAL_ROPE, LOCAL_ROPE, EPS, CONTEXT = 1_000_000.0, 10_000.0, 1e-6, 128
SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]
PIECES = ["\u2581", "t", "h", "e", "c", "a", "s", "o", "n", "m", ".", "\u2581t", "he", "\u2581the", "at",
          "\u2581c", "\u2581cat", "\u2581s", "\u2581sat", "\u2581o", "\u2581on", "\u2581m", "\u2581mat"]  # fmt: skip
TOKENS = SPECIAL + PIECES
TEXT = "the cat sat on the mat. the cat sat."

#: GGUF name -> (transformers name suffix, storage type) for one layer.
_LAYER = {
    "attn_q": ("self_attn.q_proj", "Q8_0"),
    "attn_k": ("self_attn.k_proj", "F32"),
    "attn_v": ("self_attn.v_proj", "BF16"),
    "attn_output": ("self_attn.o_proj", "F16"),
    "attn_q_norm": ("self_attn.q_norm", "F32"),
    "attn_k_norm": ("self_attn.k_norm", "F32"),
    "attn_norm": ("input_layernorm", "F32"),
    "post_attention_norm": ("post_attention_layernorm", "F32"),
    "ffn_norm": ("pre_feedforward_layernorm", "F32"),
    "post_ffw_norm": ("post_feedforward_layernorm", "F32"),
    "ffn_gate": ("mlp.gate_proj", "Q5_0"),
    "ffn_up": ("mlp.up_proj", "Q8_0"),
    "ffn_down": ("mlp.down_proj", "F32"),
}


def _shapes(suffix: str) -> tuple[int, ...]:
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    return {
        "self_attn.q_proj": (q, HIDDEN), "self_attn.k_proj": (kv, HIDDEN), "self_attn.v_proj": (kv, HIDDEN),
        "self_attn.o_proj": (HIDDEN, q), "self_attn.q_norm": (HEAD_DIM,), "self_attn.k_norm": (HEAD_DIM,),
        "mlp.gate_proj": (FFN, HIDDEN), "mlp.up_proj": (FFN, HIDDEN), "mlp.down_proj": (HIDDEN, FFN),
    }.get(suffix, (HIDDEN,))  # fmt: skip


def _stored(values: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """What the file holds for ``values`` stored as ``kind``, and what reading it back gives."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    if kind == "F32":
        return values, values
    if kind == "F16":
        half = values.astype(np.float16)
        return half, half.astype(np.float32)
    packed = quantize(values, GGMLQuantizationType[kind])
    return packed, dequantize(packed, GGMLQuantizationType[kind]).reshape(values.shape)


def write_tiny_gemma3(path: Path, *, seed: int = 0, architecture: str = "gemma3") -> dict[str, np.ndarray]:
    """Write the tiny model to ``path``; its weights as the file holds them once read back, in
    transformers' names and layout, norms as transformers wants them (without llama.cpp's + 1)."""
    from gguf import GGMLQuantizationType, GGUFWriter, TokenType

    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), architecture)
    writer.add_block_count(LAYERS)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(EPS)
    writer.add_rope_freq_base(GLOBAL_ROPE)
    writer.add_sliding_window(WINDOW)
    writer.add_sliding_window_pattern(2)  # layer 0 slides, layer 1 is global
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([0.0] * len(SPECIAL) + [-float(i) for i in range(len(PIECES))])
    writer.add_token_types([TokenType.CONTROL] * 3 + [TokenType.UNKNOWN] + [TokenType.NORMAL] * len(PIECES))
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    weights: dict[str, np.ndarray] = {}

    def put(gguf_name: str, hf_name: str, values: np.ndarray, kind: str, norm: bool = False) -> None:
        data, read_back = _stored(values + np.float32(1.0) if norm else values, kind)
        raw = None if kind in ("F32", "F16") else GGMLQuantizationType[kind]
        writer.add_tensor(gguf_name, data, raw_dtype=raw)
        weights[hf_name] = read_back - np.float32(1.0) if norm else read_back

    embed = rng.standard_normal((len(TOKENS), HIDDEN)).astype(np.float32)
    put("token_embd.weight", "model.embed_tokens.weight", embed, "Q8_0")
    for layer in range(LAYERS):
        for gguf_part, (suffix, kind) in _LAYER.items():
            shape = _shapes(suffix)
            is_norm = len(shape) == 1
            scale = 0.5 if is_norm else 1.0 / np.sqrt(shape[1])
            values = (rng.standard_normal(shape) * scale).astype(np.float32)
            put(
                f"blk.{layer}.{gguf_part}.weight",
                f"model.layers.{layer}.{suffix}.weight",
                values,
                kind,
                is_norm,
            )
    norm = (rng.standard_normal(HIDDEN) * 0.5).astype(np.float32)
    put("output_norm.weight", "model.norm.weight", norm, "F32", norm=True)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return weights


def reference_model(weights: dict[str, np.ndarray]) -> Any:
    """The tiny model built directly in torch from ``weights``, with its config written out by hand."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=len(TOKENS), hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
        max_position_embeddings=CONTEXT, rms_norm_eps=EPS, sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention"], query_pre_attn_scalar=HEAD_DIM,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": GLOBAL_ROPE},
                         "sliding_attention": {"rope_type": "default", "rope_theta": LOCAL_ROPE}},
        pad_token_id=0, bos_token_id=2, eos_token_id=1, tie_word_embeddings=True,
    )  # fmt: skip
    model = Gemma3ForCausalLM(config).eval()
    state = {name: torch.from_numpy(values.copy()) for name, values in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected, (missing, unexpected)
    model.tie_weights()
    return model
