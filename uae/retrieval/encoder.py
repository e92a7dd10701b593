"""The dual encoder: any Hugging Face encoder turned into query and passage embeddings.

One module serves zero-shot evaluation and training, so a fine-tuned checkpoint is encoded exactly
like the base model it came from. Pooling, normalisation, instructions and max lengths are config,
because they differ per model family (MiniLM: mean pooling; BGE: CLS pooling plus a query instruction).
``runtime`` picks what runs the transformer when texts are encoded for inference and evaluation (torch, or
ONNX Runtime: :mod:`uae.retrieval.runtime`); training always runs torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from uae.core.choices import Runtime
from uae.core.errors import ModelNotFoundError
from uae.models import resolve_model
from uae.retrieval.runtime import OnnxTower, check_runtime, onnx_file, require_onnx, variant_of
from uae.retrieval.st_layout import PASSAGE_TOWER, QUERY_TOWER, EncoderLayout, write_layout
from uae.storage.atomic import atomic_folder
from uae.storage.fingerprint import model_digest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Pooling = Literal["mean", "cls"]
Side = Literal["query", "passage"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Sentence embedding from token states: mask-weighted mean, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    raise ValueError(f"unknown pooling {pooling!r}; use 'mean' or 'cls'")


class TextTokenizer:
    """Texts of one side -> padded token tensors, with that side's instruction and max length.

    Separate from the encoder so data-loader workers can tokenize without pickling the model.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, instructions: dict[str, str], max_lengths: dict[str, int]) -> None:
        self.tokenizer = tokenizer
        self.instructions = instructions
        self.max_lengths = max_lengths

    def __call__(self, texts: Sequence[str], side: Side) -> dict[str, torch.Tensor]:
        prefix = self.instructions[side]
        return dict(
            self.tokenizer(
                [prefix + t for t in texts],
                padding=True,
                truncation=True,
                max_length=self.max_lengths[side],
                return_tensors="pt",
            )
        )


def checkpoint_layers(model: nn.Module) -> None:
    """Recompute each transformer layer's activations in the backward pass instead of keeping them.

    The same gradients for about a third more compute: a base-size encoder's training step of 16
    questions x 8 passages x 256 tokens otherwise holds over 20 GiB of activations. Done here on the
    layer list rather than with ``gradient_checkpointing_enable``, which MPNet does not implement.
    """
    from torch.utils.checkpoint import checkpoint  # deferred: start-up speed

    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"gradient_checkpointing: {type(model).__name__} has no encoder.layer list to checkpoint")
    for layer in layers:
        forward = layer.forward

        def checkpointed(*args: Any, _forward=forward, _layer=layer, **kwargs: Any) -> object:
            if not (torch.is_grad_enabled() and _layer.training):
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        layer.forward = checkpointed


class DualEncoder(nn.Module):
    """Query and passage towers over a Hugging Face encoder (shared weights unless ``shared=False``).

    ``runtime`` (torch, onnx, onnx-int8) applies to :meth:`encode` only, the inference and evaluation
    path: ``forward``, which training calls, is always torch. The ONNX export holds the weights as they
    were loaded, so once they change in this process (an optimizer step, ``load_state_dict``) ``encode``
    runs torch again, with a warning, rather than a stale export.
    """

    def __init__(
        self,
        model_id: str,
        *,
        cache_dir: str | os.PathLike,
        local_path: str | os.PathLike | None = None,
        pooling: Pooling = "mean",
        normalize: bool = True,
        query_instruction: str = "",
        passage_instruction: str = "",
        query_max_length: int = 64,
        passage_max_length: int = 256,
        shared: bool = True,
        passage_local_path: str | os.PathLike | None = None,
        name: str | None = None,
        gradient_checkpointing: bool = False,
        runtime: Runtime = "torch",
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # deferred: start-up speed

        self.runtime: Runtime = check_runtime(runtime)

        if pooling not in ("mean", "cls"):
            raise ValueError(f"model.pooling={pooling!r}: use 'mean' or 'cls'")
        self.model_id = model_id
        self.name = name or model_id
        self.path = resolve_model(model_id, local_path=local_path, cache_dir=cache_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.query_encoder = AutoModel.from_pretrained(self.path)
            self.passage_path = Path(passage_local_path) if (passage_local_path and not shared) else self.path
            self.passage_encoder = self.query_encoder if shared else AutoModel.from_pretrained(self.passage_path)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"The encoder folder {self.path} (for {model_id}) could not be loaded as a Hugging Face "
                f"model ({type(exc).__name__}: {exc}). Check that it holds config.json, the weights and "
                "the tokenizer files, or point model.local_path at a complete copy."
            ) from exc
        self.pooling: Pooling = pooling
        self.normalize = normalize
        self.instructions = {"query": query_instruction, "passage": passage_instruction}
        self.max_lengths = {"query": query_max_length, "passage": passage_max_length}
        self.shared = shared
        self.tokenize = TextTokenizer(self.tokenizer, self.instructions, self.max_lengths)
        if gradient_checkpointing:
            for encoder in {id(m): m for m in (self.query_encoder, self.passage_encoder)}.values():
                checkpoint_layers(encoder)
        self.cache_dir = Path(cache_dir)
        self._onnx: dict[tuple[str, str], OnnxTower] = {}  # (tower folder, device type) -> session, made on first use
        self._weights = list(self.parameters())  # listed once: walking the modules on every encode costs ~0.2 ms
        self._loaded_versions = self._weight_versions()
        self._warned_stale = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: dict[str, torch.Tensor], side: Side) -> torch.Tensor:
        """Embeddings of a tokenized batch, differentiable (training uses this path)."""
        encoder = self.query_encoder if side == "query" else self.passage_encoder
        batch = {k: v.to(self.device) for k, v in batch.items()}
        return self.sentence(encoder(**batch).last_hidden_state, batch["attention_mask"])

    def sentence(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token states -> sentence embeddings: this encoder's pooling and normalisation, for every runtime."""
        embeddings = pool(hidden, attention_mask, self.pooling)
        return F.normalize(embeddings, dim=-1) if self.normalize else embeddings

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        side: Side,
        *,
        batch_size: int = 64,
        progress: bool = True,
    ) -> torch.Tensor:
        """Embeddings of many texts, float32 on CPU, in input order.

        Texts are encoded longest first so each batch pads to similar lengths (a large saving on
        paragraphs, whose lengths vary tenfold); the original order is restored at the end. Under ONNX
        Runtime identical texts are encoded once: its kernels can give two copies in one batch embeddings
        that differ in the last bit, and repeated paragraphs must tie exactly (document order decides).
        """
        tower = self.onnx_tower(side) if self.inference_runtime() != "torch" else None
        if tower is not None:
            unique = list(dict.fromkeys(texts))
            if len(unique) < len(texts):
                rows = {text: i for i, text in enumerate(unique)}
                embedded = self.encode(unique, side, batch_size=batch_size, progress=progress)
                return embedded[[rows[text] for text in texts]]
        was_training = self.training
        if tower is None:  # dropout off; the ONNX graph was exported in eval mode (and walking the modules costs ~0.5 ms)
            self.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = torch.empty(len(texts), self.dimension, dtype=torch.float32)
        bar = tqdm(total=len(texts), desc=f"encode {side} texts", unit="text", disable=not progress, leave=False)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in index], side)
            embeddings = self.forward(batch, side) if tower is None else self.sentence(tower(batch), batch["attention_mask"])
            out[index] = embeddings.float().cpu()
            bar.update(len(index))
        bar.close()
        if tower is None:
            self.train(was_training)
        return out

    def inference_runtime(self) -> Runtime:
        """The runtime :meth:`encode` uses now: the configured one, or torch once the weights have changed
        since they were loaded (an ONNX export of the saved weights would be stale)."""
        if self.runtime == "torch" or self._weight_versions() == self._loaded_versions:
            return self.runtime
        if not self._warned_stale:
            log.warning("model.encoder.runtime=%s: the weights of %s changed since they were loaded (training?), so "
                        "they are encoded with torch; save them and load the saved folder to run ONNX.", self.runtime, self.name)
            self._warned_stale = True
        return "torch"

    def onnx_tower(self, side: Side) -> OnnxTower:
        """The ONNX Runtime session of a side's tower (exported, or found in the cache, on first use)."""
        path = self.path if side == "query" or self.shared else self.passage_path
        key = (str(path), self.device.type)
        if key not in self._onnx:
            require_onnx(f"model.encoder.runtime={self.runtime}")
            self._onnx[key] = OnnxTower(onnx_file(path, variant_of(self.runtime), self.cache_dir), self.device)
        return self._onnx[key]

    def _weight_versions(self) -> tuple[int, ...]:
        """In-place writes to the weights so far (optimizer steps, copies into them): tensors count their own."""
        return tuple(p._version for p in self._weights)

    def __getstate__(self) -> dict[str, object]:
        """Pickled (data-loader workers, spawned processes) without the ONNX Runtime sessions, which do not pickle,
        and with whether the weights changed since they were loaded: the copies' version counters start afresh."""
        return {**self.__dict__, "_onnx": {}, "_weights_changed": self._weight_versions() != self._loaded_versions}

    def __setstate__(self, state: dict[str, Any]) -> None:
        changed = state.pop("_weights_changed", True)
        super().__setstate__(state)
        # Unchanged weights stay unchanged in the copy (so it may run the ONNX export); changed ones never match.
        self._loaded_versions = () if changed else self._weight_versions()

    @property
    def dimension(self) -> int:
        return int(self.query_encoder.config.hidden_size)

    def fingerprint_spec(self, side: Side | None = None) -> dict[str, object]:
        """Everything that changes the embeddings, for cache keys (weights by content hash).

        With ``side``, only that side's settings count: changing the query instruction or query
        length must not invalidate cached passage embeddings.
        """
        sides: tuple[Side, ...] = (side,) if side else ("query", "passage")
        spec: dict[str, object] = {
            "model_id": self.model_id,
            "weights": model_digest(self.path),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "instructions": {s: self.instructions[s] for s in sides},
            "max_lengths": {s: self.max_lengths[s] for s in sides},
            "shared": self.shared,
        }
        if not self.shared:
            spec["passage_weights"] = model_digest(self.passage_path)
        if self.runtime != "torch":  # absent for torch, so that the caches made before runtimes existed stay valid
            spec["runtime"] = self.runtime
        return spec

    def layout(self) -> EncoderLayout:
        """The settings an export carries beside the weights (see uae.retrieval.st_layout)."""
        return EncoderLayout(
            pooling=self.pooling,
            normalize=self.normalize,
            query_instruction=self.instructions["query"],
            passage_instruction=self.instructions["passage"],
            query_max_length=self.max_lengths["query"],
            passage_max_length=self.max_lengths["passage"],
            shared=self.shared,
        )

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the towers as a sentence-transformers folder that is also a Hugging Face one.

        Shared towers: the model and tokenizer at the top (what ``local_path`` loads). Separate towers:
        ``folder/query`` and ``folder/passage``, each with the tokenizer, under a sentence-transformers
        Router (:func:`uae.retrieval.st_layout.tower_paths` gives both paths). Written to a temporary
        sibling and renamed, so a crash never leaves a half-saved encoder.
        """
        from transformers import AutoTokenizer  # deferred: start-up speed

        folder = Path(folder)
        # A fast tokenizer writes into tokenizer.json the truncation and padding of its last call, so saving the
        # one in use would make the folder (and every cache keyed by its digest) depend on what was encoded
        # last: the same weights, exported before and after an evaluation, would digest differently. The
        # tokenizer as loaded has no such history.
        tokenizer = AutoTokenizer.from_pretrained(self.path)
        with atomic_folder(folder) as tmp:
            towers = [(self.query_encoder, tmp)] if self.shared else [
                (self.query_encoder, tmp / QUERY_TOWER), (self.passage_encoder, tmp / PASSAGE_TOWER)
            ]
            for encoder, path in towers:
                encoder.save_pretrained(path)
                tokenizer.save_pretrained(path)
            write_layout(tmp, self.layout(), self.dimension)
        return folder
