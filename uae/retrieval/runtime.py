"""Inference runtimes of the dual encoder: eager torch, or ONNX Runtime over an export of its transformer.

``model.encoder.runtime`` (``Retriever.load(runtime=)``, ``python -m uae.search --runtime``):

- ``torch`` (default): the transformer in eager PyTorch, as training runs it;
- ``onnx``: the same weights exported to ONNX (:mod:`uae.retrieval.onnx_export`) and run by ONNX Runtime
  (CPUExecutionProvider; CUDAExecutionProvider when the encoder sits on a GPU and onnxruntime-gpu offers
  it); embeddings equal torch's to float rounding (about 1e-6), so rankings are the same;
- ``onnx-int8``: that export with its MatMul weights quantized to 8 bits (dynamic quantization): faster
  on CPUs, but its embeddings only approximate torch's, so its rankings and metrics are its own.

Only inference and evaluation encoding (``DualEncoder.encode``) changes; training runs ``forward``, in
torch, whatever the setting. The export is made once per weights (keyed by their content digest) into
``paths.cache_dir/onnx/``, unless the model folder ships one (``onnx/model.onnx`` from ``uae.export``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from uae.core.choices import RUNTIMES, Runtime
from uae.core.errors import UAEError
from uae.models.folders import first_line
from uae.retrieval.onnx_export import OUTPUT, Variant, onnx_spec, read_export, write_export
from uae.storage.fingerprint import fingerprint
from uae.storage.once import build_once

log = logging.getLogger(__name__)

SHIPPED = "onnx"  # the subfolder of a model folder where sentence-transformers looks for model.onnx


def check_runtime(value: object, setting: str = "model.encoder.runtime") -> Runtime:
    """``value`` if it names a runtime, else a :class:`UAEError` naming ``setting`` and the choices."""
    if value not in RUNTIMES:
        raise UAEError(
            f"{setting}={value!r} is not a runtime UAE knows: use one of {', '.join(RUNTIMES)} "
            "(torch runs the encoder in PyTorch; onnx and onnx-int8 in ONNX Runtime, pip install 'uae[onnx]')."
        )
    return value  # type: ignore[return-value]


def variant_of(runtime: Runtime) -> Variant:
    return "int8" if runtime == "onnx-int8" else "fp32"


def require_onnx(what: str) -> None:
    """Refuse ``what`` (a setting or a command) in words when onnx or onnxruntime is not installed."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise UAEError(
            f"{what} needs the package{'s' if len(missing) > 1 else ''} {' and '.join(missing)}, which "
            f"{'are' if len(missing) > 1 else 'is'} not installed: pip install 'uae[onnx]' "
            "(or pip install onnx onnxruntime), or use runtime torch."
        )


def onnx_file(tower: str | Path, variant: Variant, cache_dir: str | Path) -> Path:
    """The ONNX export to run for the Hugging Face folder ``tower``: the one it ships in ``onnx/`` when that
    was made from these weights, else ``cache_dir/onnx/<variant>-<key>/``, exported now if it is not there.

    The cache folder appears complete or not at all, and two processes that start together export once
    (:func:`uae.storage.once.build_once`).
    """
    tower = Path(tower)
    spec = onnx_spec(tower, variant)
    shipped = read_export(tower / SHIPPED, spec)
    if shipped is not None:
        return shipped
    target = Path(cache_dir).expanduser() / "onnx" / f"{variant}-{fingerprint(spec)[:20]}"

    def export(tmp: Path) -> str:
        fp32 = onnx_file(tower, "fp32", cache_dir) if variant == "int8" else None
        try:
            return write_export(tower, tmp, variant, fp32=fp32).name
        except UAEError:
            raise
        except Exception as exc:  # the exporter's or the quantizer's own errors: this model does not export
            raise UAEError(
                f"Exporting {tower} to ONNX ({variant}) failed ({type(exc).__name__}: {first_line(exc, 300)}); "
                "nothing was left in the cache. Use model.encoder.runtime=torch for this model."
            ) from exc

    return build_once(target, lambda: read_export(target, spec), export, what=f"the ONNX export of {tower}")


class OnnxTower:
    """One ONNX Runtime session over an export: token tensors in, the last hidden state (a CPU tensor) out.

    Its threads follow ``torch.get_num_threads()`` at creation, so ``torch.set_num_threads`` sets both
    runtimes alike (what a benchmark comparing them needs).
    """

    def __init__(self, file: Path, device: torch.device) -> None:
        import onnxruntime as ort  # deferred: optional dependency

        providers: list[str | tuple[str, dict[str, object]]] = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
            else:
                log.warning("runtime onnx: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); "
                            "the encoder runs on the CPU")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.file = file
        self.session = ort.InferenceSession(str(file), options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        feed = {}
        for name in self.inputs:
            tensor = batch.get(name)
            if tensor is None and name == "token_type_ids":  # what the transformer assumes when it is not given
                tensor = torch.zeros_like(batch["input_ids"])
            if tensor is None:
                raise UAEError(f"{self.file} takes {name!r}, which the tokenizer does not give; use runtime torch.")
            feed[name] = tensor.detach().cpu().numpy().astype(np.int64, copy=False)
        return torch.from_numpy(self.session.run([OUTPUT], feed)[0])

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())
