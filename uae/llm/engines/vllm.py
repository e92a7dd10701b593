"""The teacher on vLLM (GPU only): prompt log-probabilities with automatic prefix caching.

vLLM is the field's GPU serving engine. Scoring asks it for ``prompt_logprobs`` of the whole sequence
and generates one throw-away token; its automatic prefix caching shares a passage's KV cache between
the questions asked of it, as the home-made prefix engine does for ``hf``. It is an optional extra
(``pip install 'uae[vllm]'`` on a CUDA machine) and refuses to start without a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from uae.core.errors import UAEError
from uae.llm.engines import require_gpu


class VLLMEngine:
    """:class:`uae.llm.engines.TokenScorer` on ``vllm.LLM`` (prompt log-probabilities, prefix caching on)."""

    name = "vllm"

    def __init__(self, hf_path: Path, *, compute_type: str, max_length: int, cuda_available: bool) -> None:
        require_gpu(cuda_available)
        try:
            from vllm import LLM, SamplingParams  # deferred: optional GPU engine
        except ImportError as exc:
            raise UAEError("llm.engine=vllm needs the vllm package on this GPU machine: pip install 'uae[vllm]'.") from exc
        self.compute_type = compute_type
        self.llm = LLM(
            model=str(hf_path), dtype=compute_type, enable_prefix_caching=True, max_model_len=max_length,
            seed=0, gpu_memory_utilization=float(os.environ.get("UAE_VLLM_MEMORY", "0.5")),
        )  # fmt: skip
        self.params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)

    def score(self, sequences: Sequence[Sequence[int]], target_starts: Sequence[int]) -> np.ndarray:
        from vllm.inputs import TokensPrompt  # deferred: optional GPU engine

        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences], self.params, use_tqdm=False)
        sums = np.empty(len(sequences), dtype=np.float64)
        for i, (out, seq, start) in enumerate(zip(outputs, sequences, target_starts, strict=True)):
            # prompt_logprobs[t] maps token ids to their Logprob at position t (None at t = 0); the
            # sequence's own token is always among them
            sums[i] = sum(out.prompt_logprobs[t][seq[t]].logprob for t in range(start, len(seq)))
        return sums
