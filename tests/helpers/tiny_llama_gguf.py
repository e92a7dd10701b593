"""The tiny random Llama of ``tiny_lm_dir`` written as a float32 GGUF, as llama.cpp's converter writes one.

llama.cpp reads it with exact float32 kernels (no weight or activation quantisation), so its
log-probabilities must match transformers' on the same weights to float rounding: what the
llama.cpp engine's tests compare. Two things make the file llama.cpp's and not a plain dump:
the GGUF tensor names, and the query/key rows permuted into llama.cpp's rotary layout
(``convert_hf_to_gguf.py``'s ``LlamaModel.permute``; left out, every position but the first differs).
The vocabulary is SmolLM2's, copied from the bundled GGUF (the tiny model uses its tokenizer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotate-half row order to llama.cpp's interleaved pairs, per head (as convert_hf_to_gguf.py does)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_tiny_llama_gguf(hf_dir: Path, out: Path, vocab_gguf: Path) -> Path:
    """Write ``hf_dir``'s weights (a LlamaForCausalLM) to ``out`` with ``vocab_gguf``'s tokenizer."""
    import torch
    from gguf import GGUFReader, GGUFWriter
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(hf_dir)
    weights = {
        k: v.to(torch.float32).numpy() for k, v in load_file(str(hf_dir / "model.safetensors")).items()
    }
    vocab = GGUFReader(vocab_gguf)
    writer = GGUFWriter(str(out), "llama")
    head_dim = config.hidden_size // config.num_attention_heads
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(
        float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"])
    )
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(0)  # ALL_F32
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(vocab.fields["tokenizer.ggml.tokens"].contents())
    writer.add_token_types(list(vocab.fields["tokenizer.ggml.token_type"].contents()))
    writer.add_token_merges(vocab.fields["tokenizer.ggml.merges"].contents())
    writer.add_bos_token_id(int(config.bos_token_id))
    writer.add_eos_token_id(int(config.eos_token_id))
    writer.add_add_bos_token(False)

    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    for layer in range(config.num_hidden_layers):
        for gguf_part, hf_part in _LAYER.items():
            values = weights[f"model.layers.{layer}.{hf_part}.weight"]
            if gguf_part == "attn_q":
                values = permute(values, config.num_attention_heads)
            elif gguf_part == "attn_k":
                values = permute(values, config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{gguf_part}.weight", np.ascontiguousarray(values))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    writer.add_tensor("output.weight", weights["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
