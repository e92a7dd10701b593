"""``uae.Retriever``: a trained encoder for code that does not go through the CLI.

    from uae import Retriever

    r = Retriever.load("logs/quickstart/runs/<time>")      # a run folder, or an exported encoder folder
    r.rank("What dataset do they use?", paragraphs, k=3)    # one document's passages, best first
    r.index(corpus)                                         # a FAISS index of a corpus (GPU FAISS when present)
    r.search("What dataset do they use?", k=5)
    r.index(corpus, factory="HNSW32", ef_search=128)        # an approximate index (uae/retrieval/ann.py)
    r.save_index("my-index.pt")                             # the encoded corpus and its index, digest-checked;
    Retriever.load(model).load_index("my-index.pt")        # later: searched without encoding the corpus again

It runs UAE's own encoder on the settings in the exported folder (pooling, normalisation, prompts, max
lengths), so it embeds as ``python -m uae.run`` evaluated it, and ranks with the same rules (exact inner
products; equal scores keep the passages' order). ``Retriever.load(path, runtime="onnx")`` runs the
transformer in ONNX Runtime instead of PyTorch (the same embeddings to about 1e-6, faster on CPUs; see
:mod:`uae.retrieval.runtime`), from the folder's ``onnx/model.onnx`` when ``uae.export`` shipped one. ``k`` larger than the number of passages is clamped
to that number: every passage, ranked. This module imports nothing heavy, so ``from uae import
Retriever`` stays cheap; torch, transformers and FAISS load with the model.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from uae.core.errors import UAEError

if TYPE_CHECKING:
    import numpy as np

    from uae.retrieval.ann import IndexSpec
    from uae.retrieval.encoder import DualEncoder
    from uae.retrieval.index import PassageIndex

# Corpora above this many passages show a progress bar while they are encoded (progress=None).
PROGRESS_FROM = 1_000


@dataclass(frozen=True)
class Hit:
    """One retrieved passage: its position in the list given, its id (the position as text unless ids were
    given), its text and its score (cosine similarity for a normalised model, else the inner product)."""

    rank: int
    score: float
    index: int
    id: str
    text: str


class Retriever:
    """A dual encoder ready to rank passages for questions."""

    def __init__(self, encoder: DualEncoder, *, batch_size: int = 64, progress: bool | None = None,
                 use_gpu_index: bool | None = None, source: Path | None = None) -> None:
        if int(batch_size) < 1:
            raise UAEError(f"batch_size={batch_size}: must be a positive number of texts per batch.")
        self.encoder = encoder
        self.batch_size = int(batch_size)
        self.progress = progress
        self.use_gpu_index = use_gpu_index
        self.source = source
        self._index: PassageIndex | None = None
        self._texts: list[str] = []
        self._ids: list[str] = []
        self._factory = "Flat"

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        device: str = "auto",
        batch_size: int = 64,
        progress: bool | None = None,
        use_gpu_index: bool | None = None,
        runtime: str = "torch",
        cache_dir: str | os.PathLike | None = None,
    ) -> Retriever:
        """The encoder of a run folder (its ``encoder/``) or of an exported sentence-transformers folder.

        ``device``: auto (CUDA when available), cpu or cuda. ``progress``: None shows a bar for corpora
        of over 1,000 passages. ``use_gpu_index``: None puts the FAISS index on the GPU when faiss-gpu
        and a GPU are present. ``runtime``: torch, onnx or onnx-int8 (ONNX Runtime; pip install
        'uae[onnx]'). ``cache_dir``: where an ONNX export the folder does not ship is made, once (default:
        UAE_CACHE_DIR, else ~/.cache/uae).
        """
        import torch  # deferred: start-up speed

        from uae.results.folder import find_encoder
        from uae.retrieval.encoder import DualEncoder
        from uae.retrieval.runtime import check_runtime
        from uae.retrieval.st_layout import read_layout

        runtime = check_runtime(runtime, "runtime")
        folder = find_encoder(path)
        layout, query_path, passage_path = read_layout(folder)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        encoder = DualEncoder(
            str(folder),
            cache_dir=default_cache_dir(cache_dir),  # only ONNX exports go there: the towers are local folders
            local_path=query_path,
            passage_local_path=passage_path,
            name=folder.parent.name if folder.name == "encoder" else folder.name,
            runtime=runtime,
            **asdict(layout),
        )
        try:
            encoder.to(device).eval()
        except (RuntimeError, AssertionError) as exc:
            raise UAEError(f"device={device!r}: the model cannot be moved there ({exc}). Use device='cpu'.") from exc
        return cls(encoder, batch_size=batch_size, progress=progress, use_gpu_index=use_gpu_index, source=folder)

    def __repr__(self) -> str:
        return f"Retriever({self.source or self.encoder.name}, {len(self._texts)} passages indexed)"

    def __len__(self) -> int:
        """How many passages the index holds."""
        return len(self._texts)

    def embed_queries(self, questions: Sequence[str]) -> np.ndarray:
        """Query embeddings (float32, one row per question), with the query instruction."""
        return self._embed(_texts(questions, "questions"), "query")

    def embed_passages(self, passages: Sequence[str]) -> np.ndarray:
        """Passage embeddings (float32, one row per passage), with the passage instruction."""
        return self._embed(_texts(passages, "passages"), "passage")

    def rank(self, question: str, passages: Sequence[str], k: int | None = None) -> list[Hit]:
        """The ``k`` best of ``passages`` for ``question`` (all of them when k is None or larger), best first.

        For one document's passages: scored exactly, nothing kept. A corpus searched by many questions
        is faster with :meth:`index` and :meth:`search`."""
        from uae.retrieval.index import PassageIndex  # deferred: start-up speed

        question = _question(question)
        texts = _texts(passages, "passages")
        k = _k(k, len(texts))
        index = PassageIndex(self._embed(texts, "passage"), [str(i) for i in range(len(texts))], [""] * len(texts))
        scores, rows = index.search_document(self._embed([question], "query"), None)
        return [Hit(r + 1, float(s), int(i), str(i), texts[int(i)]) for r, (s, i) in enumerate(zip(scores[0][:k], rows[0][:k]))]

    def index(
        self, passages: Sequence[str], ids: Sequence[str] | None = None, *, factory: str = "Flat",
        ef_search: int | None = None, nprobe: int | None = None, exact_rerank: int = 0,
    ) -> Retriever:
        """Encode a corpus (batched; a progress bar past 1,000 passages) into a FAISS index for :meth:`search`.

        ``ids`` name the passages in the hits (default: their positions). Replaces an earlier index.
        ``factory``: a FAISS index_factory string (Flat: exact; HNSW32, IVF4096,Flat, IVF4096,PQ48np, ...), searched
        with ``ef_search`` / ``nprobe``, its top ``exact_rerank`` re-scored exactly (:mod:`uae.retrieval.ann`)."""
        from uae.retrieval.ann import IndexSpec  # deferred: start-up speed

        texts = _texts(passages, "passages")
        ids = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
        if len(ids) != len(texts):
            raise UAEError(f"index: {len(ids)} ids for {len(texts)} passages; give one id per passage.")
        if len(set(ids)) != len(ids):
            raise UAEError("index: the ids are not unique; each passage needs its own id.")
        self._fill(self._embed(texts, "passage"), texts, ids, IndexSpec(factory, ef_search, nprobe, exact_rerank), None)
        return self

    def index_shards(
        self, folder: str | os.PathLike, passages: Sequence[str], ids: Sequence[str], *, factory: str = "Flat",
        ef_search: int | None = None, nprobe: int | None = None, exact_rerank: int = 0,
    ) -> Retriever:
        """:meth:`index` from embedding shards that ``python -m uae.encode`` wrote (digests checked), encoding nothing:
        a corpus encoded once (on GPUs, in worker processes) is searched here. The shards must be this encoder's
        (its passage side) of exactly these passages and ids, or they are refused. An approximate index fills
        shard by shard (:func:`uae.retrieval.ann.index_from_shards`)."""
        from uae.retrieval.ann import IndexSpec, index_from_shards  # deferred: start-up speed
        from uae.retrieval.shards import ShardSet, ids_digest
        from uae.storage.digest import strings_digest
        from uae.storage.fingerprint import fingerprint

        texts, ids = _texts(passages, "passages"), [str(i) for i in ids]
        shards = ShardSet.load(Path(folder))
        expected = {"encoder": fingerprint(self.encoder.fingerprint_spec("passage")), "passages": ids_digest(ids), "texts": strings_digest(texts)}
        wrong = [name for name, value in expected.items() if getattr(shards.spec, name) != value]
        if wrong:
            what = {"encoder": f"another encoder than {self.source or self.encoder.name}", "passages": "other passage ids", "texts": "other passage texts"}
            raise UAEError(f"{folder} holds embeddings of {' and '.join(what[w] for w in wrong)} than asked here: encode these "
                           "passages with this model (python -m uae.encode MODEL --passages FILE --to FOLDER), or give the shards' own.")
        spec = IndexSpec(factory, ef_search, nprobe, exact_rerank)
        built = None if spec.exact else index_from_shards(shards, factory)
        self._fill(shards.to_array(), texts, ids, spec, built)
        return self

    def _fill(self, embeddings: np.ndarray, texts: list[str], ids: list[str], spec: IndexSpec, built: Any) -> None:
        from uae.retrieval.ann import build_index, configure  # deferred: start-up speed
        from uae.retrieval.index import PassageIndex

        corpus_index = None if spec.exact else configure(built if built is not None else build_index(embeddings, spec.factory), spec)
        rows = [str(i) for i in range(len(texts))]
        self._index = PassageIndex(embeddings, rows, [""] * len(texts), use_gpu=self.use_gpu_index, spec=spec, corpus_index=corpus_index)
        self._texts, self._ids, self._factory = texts, ids, spec.factory

    def save_index(self, path: str | os.PathLike) -> Path:
        """Write the indexed corpus (embeddings, ids, texts, the built index) to one file, atomically and with its
        content digest, for :meth:`load_index` by any Retriever of the same encoder: a corpus is encoded once."""
        import faiss  # deferred: start-up speed
        import torch

        from uae.storage.tensors import save_tensors

        if self._index is None:
            raise UAEError("save_index: nothing is indexed yet. Call index(passages) first.")
        built = None if self._index.spec.exact else self._index._corpus_index
        payload = {"embeddings": torch.from_numpy(self._index.vectors), "ids": self._ids, "texts": self._texts,
                   "factory": self._factory, "index": None if built is None else torch.from_numpy(faiss.serialize_index(built))}
        save_tensors(path, self.corpus_key, payload)
        return Path(path)

    def load_index(self, path: str | os.PathLike, *, ef_search: int | None = None, nprobe: int | None = None,
                   exact_rerank: int = 0) -> Retriever:
        """Read a corpus saved by :meth:`save_index` (digest checked; made with this encoder, or refused) and
        search it with these settings; nothing is encoded."""
        import faiss  # deferred: start-up speed

        from uae.core.errors import CacheMismatchError
        from uae.retrieval.ann import IndexSpec
        from uae.storage.tensors import load_tensors

        try:
            stored = load_tensors(path, self.corpus_key)
        except CacheMismatchError:
            raise UAEError(f"{path} was indexed with another encoder (or other passage settings) than "
                           f"{self.source or self.encoder.name}: index the corpus again with this one.") from None
        if stored is None:
            raise UAEError(f"{path}: no saved index there, or a damaged one. Make it with index() and save_index().")
        built = None if stored["index"] is None else faiss.deserialize_index(stored["index"].numpy())
        spec = IndexSpec(stored["factory"], ef_search, nprobe, exact_rerank)
        self._fill(stored["embeddings"].numpy(), list(stored["texts"]), list(stored["ids"]), spec, built)
        return self

    @functools.cached_property
    def corpus_key(self) -> str:
        """What a saved corpus must have been encoded with: this encoder's passage side (its weights hashed once)."""
        from uae.storage.fingerprint import fingerprint  # deferred: start-up speed

        return fingerprint({"saved_corpus": 1, "encoder": self.encoder.fingerprint_spec("passage")})

    @property
    def corpus(self) -> tuple[list[str], list[str], str]:
        """The indexed passages' texts and ids, and the index's factory string."""
        return self._texts, self._ids, self._factory

    @overload  # a str is a Sequence[str] too: this first overload takes it, as search itself does
    def search(self, question: str, k: int = 10) -> list[Hit]: ...  # type: ignore[overload-overlap]
    @overload
    def search(self, question: Sequence[str], k: int = 10) -> list[list[Hit]]: ...
    def search(self, question: str | Sequence[str], k: int = 10) -> list[Hit] | list[list[Hit]]:
        """The ``k`` best indexed passages for a question (a list of hits), or for each of several questions
        (a list of such lists, encoded in batches). ``k`` above the corpus size is clamped to it."""
        if self._index is None:
            raise UAEError("search: nothing is indexed yet. Call index(passages) first.")
        single = isinstance(question, str)
        questions = [_question(question)] if single else [_question(q) for q in _texts(question, "questions")]
        k = _k(k, len(self._texts))
        scores, rows = self._index.search_corpus(self._embed(questions, "query"), k)
        hits = [
            [Hit(r + 1, float(s), int(i), self._ids[int(i)], self._texts[int(i)]) for r, (s, i) in enumerate(zip(qs, qr))]
            for qs, qr in zip(scores, rows)
        ]
        return hits[0] if single else hits

    def _embed(self, texts: list[str], side: str) -> np.ndarray:
        progress = self.progress if self.progress is not None else len(texts) > PROGRESS_FROM
        return self.encoder.encode(texts, side, batch_size=self.batch_size, progress=progress).numpy()  # type: ignore[arg-type]


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache a Retriever writes to: the one given, else UAE_CACHE_DIR, else ~/.cache/uae (XDG_CACHE_HOME)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("UAE_CACHE_DIR"):
        return Path(os.environ["UAE_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "uae"


def _texts(values: Any, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise UAEError(f"{what}: expected a list of strings, got {type(values).__name__}.")
    texts = list(values)
    if not texts:
        raise UAEError(f"{what}: the list is empty; there is nothing to rank.")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise UAEError(f"{what}[{bad}] is a {type(texts[bad]).__name__}, not a string.")
    return texts


def _question(question: Any) -> str:
    if not isinstance(question, str) or not question.strip():
        raise UAEError(f"question: expected a non-empty string, got {question!r}.")
    return question


def _k(k: int | None, n: int) -> int:
    """``k`` clamped to the ``n`` passages there are (None: all of them)."""
    if k is None:
        return n
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise UAEError(f"k={k!r}: must be a positive integer (the number of passages to return).")
    return min(int(k), n)
