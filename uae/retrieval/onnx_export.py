"""ONNX exports of an encoder tower: the transformer of a Hugging Face folder as one ``.onnx`` file.

``input_ids, attention_mask[, token_type_ids] -> last_hidden_state``, batch and sequence axes dynamic:
the graph optimum's ``ORTModelForFeatureExtraction`` runs, which is what sentence-transformers'
``backend="onnx"`` loads from a model folder's ``onnx/model.onnx``. Pooling and normalisation stay
outside, in the same torch code as the torch runtime, so one file serves every pooling setting and the
two runtimes differ only by the transformer's float rounding.

The exporter is ``torch.onnx.export(dynamo=False)`` (TorchScript tracing): deprecated in torch 2.13 but
there, it needs only the ``onnx`` package (the dynamo exporter also needs onnxscript), exports MiniLM in
about 3 s where dynamo takes about 17 s, and both write the same bytes on every run. Tracing records the
branch each Python ``if`` took, so the example batch is padded (the attention mask is applied, as any
batch needs) and every export is checked against torch on a batch of other shapes before it is kept.
Attention is exported in its eager form (MatMul and Softmax), which ONNX Runtime's fusions recognise.

A folder holding an export carries ``uae_onnx.json``: what made it (the weights' digest, the opset, the
variant) and a digest of the file, checked on every read, as every UAE cache is.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from uae.core.errors import UAEError
from uae.storage.digest import file_digest
from uae.storage.fingerprint import model_digest

log = logging.getLogger(__name__)

Variant = Literal["fp32", "int8"]
FILES: dict[str, str] = {"fp32": "model.onnx", "int8": "model_qint8.onnx"}
MARKER = "uae_onnx.json"
FORMAT = 1
OPSET = 17  # LayerNormalization is one op from 17 on; ONNX Runtime 1.18+ runs it
# A tracing mistake is off by whole units; float rounding of a 6-12 layer encoder by about 1e-5.
TOLERANCE = 1e-3
OUTPUT = "last_hidden_state"
_AXES = {0: "batch_size", 1: "sequence_length"}  # optimum's names
_EXAMPLE = ["What dataset do they use?", "A longer text than the question, so that the question is padded in the batch."]
_PROBE = ["a", "How large is the corpus of papers and questions that the authors collected for this study?", "Table 2."]


def onnx_spec(tower: str | Path, variant: Variant) -> dict[str, Any]:
    """What an export of ``tower`` must have been made from and how: the key of its cache folder."""
    return {"format": FORMAT, "weights": model_digest(tower), "opset": OPSET, "variant": variant}


def read_export(folder: Path, spec: dict[str, Any]) -> Path | None:
    """The ``.onnx`` file of ``folder`` when its marker says it was made as ``spec`` says and its bytes
    are the ones written; None otherwise (no export there, another model's, or a damaged one)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or any(marker.get(k) != v for k, v in spec.items()):
        return None
    file = folder / FILES[spec["variant"]]
    try:
        intact = file_digest(file) == marker.get("digest")
    except OSError:
        intact = False
    if not intact:
        log.warning("%s does not hold the bytes its marker %s recorded: exporting again", file, MARKER)
        return None
    return file


def write_export(tower: str | Path, folder: Path, variant: Variant = "fp32", *, fp32: Path | None = None) -> Path:
    """Export ``tower`` into ``folder`` (empty, or a temporary one about to be renamed) with its marker.

    ``int8`` quantizes the weights of the MatMuls to signed 8 bits with one scale per output channel
    (``onnxruntime.quantization.quantize_dynamic``; activations are quantized per batch at run time), from
    ``fp32`` (an export already made) or from a new one. Per-channel scales keep MiniLM's embeddings at a
    cosine of about 0.99 to fp32's, where one scale per tensor gives about 0.95; close, not equal, so
    rankings can differ.
    """
    tower = Path(tower)
    file = folder / FILES[variant]
    record: dict[str, Any] = onnx_spec(tower, variant)
    if variant == "fp32":
        record["max_abs_diff"] = _export_fp32(tower, file)
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic  # deferred: optional dependency

        source = fp32
        if source is None:
            source = folder / f".{FILES['fp32']}"
            _export_fp32(tower, source)
        with _quiet_root_logger():  # the quantizer logs a line per tensor, and a hint, to the root logger
            quantize_dynamic(source, file, weight_type=QuantType.QInt8, per_channel=True)
        if fp32 is None:
            source.unlink()
    record |= {"file": file.name, "digest": file_digest(file), "source": str(tower)}
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return file


def _export_fp32(tower: Path, file: Path) -> float:
    """Trace the tower's transformer into ``file``; the largest difference from torch on a probe batch."""
    from transformers import AutoModel, AutoTokenizer  # deferred: start-up speed

    tokenizer = AutoTokenizer.from_pretrained(tower)
    model = _eager(AutoModel, tower)
    names = input_names(tokenizer, model)
    example = tokenizer(_EXAMPLE, padding=True, return_tensors="pt")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice and tracer warnings about branches fixed above
        torch.onnx.export(
            _LastHiddenState(model, names).eval(), tuple(example[n] for n in names), str(file), dynamo=False,
            input_names=names, output_names=[OUTPUT], opset_version=OPSET,
            dynamic_axes={name: _AXES for name in (*names, OUTPUT)},
        )
    diff = _difference(model, tokenizer, names, file)
    if not diff <= TOLERANCE:
        raise UAEError(
            f"The ONNX export of {tower} does not compute what the torch model computes (largest difference "
            f"{diff:.3g} in the last hidden state, over {TOLERANCE:g}): this architecture does not trace. "
            "Use model.encoder.runtime=torch."
        )
    log.info("exported %s to ONNX (largest difference from torch %.2g)", tower, diff)
    return diff


def input_names(tokenizer: Any, model: Any) -> list[str]:
    """The inputs the graph takes: the tokenizer's outputs that the model's forward accepts, optimum's order."""
    accepted = inspect.signature(model.forward).parameters
    given = set(getattr(tokenizer, "model_input_names", ("input_ids", "attention_mask")))
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in given and n in accepted]


def _eager(auto: Any, tower: Path) -> Any:
    """The model on the CPU in eval mode, with eager attention where the architecture offers it."""
    try:
        return auto.from_pretrained(tower, attn_implementation="eager").eval()
    except (ValueError, TypeError):
        return auto.from_pretrained(tower).eval()


def _difference(model: Any, tokenizer: Any, names: list[str], file: Path) -> float:
    """Largest absolute difference of the real tokens' hidden states, ONNX Runtime against torch."""
    import onnxruntime as ort  # deferred: optional dependency

    probe = tokenizer(_PROBE, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**{n: probe[n] for n in names}).last_hidden_state
    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run([OUTPUT], {n: probe[n].numpy() for n in names})[0])
    mask = probe["attention_mask"].unsqueeze(-1).to(got.dtype)
    return float(((got - expected).abs() * mask).max())


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _LastHiddenState(nn.Module):
    """The traced module: the named inputs in, the last hidden state out (no pooler output, no dict).

    Made in eval mode: the exporter puts the module back in the mode it found it in, and a wrapper left in
    train mode would switch the model's dropout on for the check that follows the export.
    """

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors, strict=True))).last_hidden_state
