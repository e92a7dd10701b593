"""Make a model folder that travelled to the lent GPU machine loadable: fp16 weights cast back, or random ones.

    python experiments/gpu/weights.py FOLDER [FOLDER ...] [--seed 0]

Each FOLDER holds a model's config and tokenizer (a Hugging Face folder, or a sentence-transformers one
whose top level is the transformer). Then, in this order:

* ``model.safetensors`` (or another weights file) is there: left as it is;
* ``model.fp16.safetensors`` is there (the real weights, halved to travel: experiments/qasper/gpu/common.sh
  did the same for MiniLM): cast back to float32 as ``model.safetensors``;
* neither: seeded random weights of the config's architecture (``from_config``), saved as ``model.safetensors``.

Why random weights at all: what experiments/gpu/check.sh measures of a model, seconds per step, peak GPU
memory, throughput, and whether two engines compute the same log-likelihoods, depends on its architecture,
shapes and dtype, not on the values of its weights; and the weights are most of what would travel
(SmolLM2-135M: 93 MB as its GGUF package, MiniLM: 45 MB in fp16) under a 64 MiB limit per call that the
repository already fills by more than half. A random model's next-token distributions are nearly uniform,
so engine agreement on it is a weaker test than on the trained teacher: carry that for the strong one
(experiments/gpu/prep.sh --teacher). Prints one line per folder saying which of the three it did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def is_causal_lm(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return any(name.endswith("ForCausalLM") for name in config.get("architectures") or [])


def prepare(folder: Path, seed: int) -> str:
    """Give ``folder`` float32 weights; returns what was done, in words."""
    if not (folder / "config.json").is_file():
        raise SystemExit(f"{folder}: no config.json (not a model folder)")
    if any((folder / name).is_file() for name in WEIGHTS):
        return f"{folder}: has its weights, left as is"
    import torch  # deferred: --help stays instant

    half = folder / "model.fp16.safetensors"
    if half.is_file():
        from safetensors.torch import load_file, save_file

        tensors = load_file(half)
        save_file(
            {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
            folder / "model.safetensors",
        )
        half.unlink()
        return f"{folder}: real weights, fp16 cast back to float32 ({len(tensors)} tensors)"
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(folder)
    model = (AutoModelForCausalLM if is_causal_lm(folder) else AutoModel).from_config(
        config, dtype=torch.float32
    )
    model.save_pretrained(folder, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    return f"{folder}: RANDOM weights (seed {seed}) of {type(model).__name__}, {params / 1e6:.1f}M parameters"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for folder in args.folders:
        print(prepare(folder, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
