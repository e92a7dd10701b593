"""Encode a corpus into embedding shards (:mod:`uae.retrieval.shards`), resumably, with one of three engines.

Every engine encodes the same shards the same way (``encoder.encode`` over one shard's texts, in batches of
``batch_size``), so they give the same vectors up to the float rounding of their runtimes and thread counts
(1e-5 between ONNX Runtime and torch, ``tests/retrieval/test_shard_engines.py``):

- ``local`` (the reference): this process encodes the missing shards one after another, with the encoder's
  runtime (torch, or ONNX Runtime: ``model.encoder.runtime``);
- ``processes``: ``workers`` spawned CPU processes, each with a copy of the encoder and its share of the
  threads, encode disjoint shards and write them; this process records each in the manifest. With
  ``runtime=onnx`` each runs ONNX Runtime, the fast path on a CPU server;
- ``lightning``: Lightning's predict loop (:mod:`uae.retrieval.shard_predict`) on the ``Trainer`` that
  ``trainer`` options make: one GPU, or DDP over several (each rank encodes the shards whose index is its rank
  modulo the world size); on a CPU it runs in this process.

Whatever the engine, a shard is recorded only once it is on disk with its digest, so a stopped or killed encoding
resumes by calling :func:`encode_shards` again with the same arguments: the recorded shards are checked and kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from uae.core.choices import SHARD_ENGINES, ShardDtype, ShardEngine
from uae.core.errors import UAEError
from uae.retrieval.encoder import DualEncoder
from uae.retrieval.shards import Shard, ShardFolder, ShardSet, ShardSpec, ids_digest
from uae.storage.digest import strings_digest
from uae.storage.fingerprint import fingerprint

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 10_000  # passages: 15 MB of float32 at 384 dimensions; a kill loses at most one shard of work


def shard_spec(
    encoder: DualEncoder, texts: Sequence[str], ids: Sequence[str], *, shard_size: int, dtype: ShardDtype, encoder_key: str | None = None
) -> ShardSpec:
    """What shards of these passages by this encoder are made from. ``encoder_key``: the fingerprint of the encoder's
    passage side when the caller has it (it hashes the weights), else computed here."""
    if len(ids) != len(texts):
        raise UAEError(f"{len(ids)} passage ids for {len(texts)} passages; give one id per passage.")
    if any("\n" in i for i in ids):
        raise UAEError("a passage id holds a line break; the shard folder keeps one id per line, so ids must not.")
    return ShardSpec(
        encoder=encoder_key or fingerprint(encoder.fingerprint_spec("passage")),
        passages=ids_digest(ids),
        texts=strings_digest(texts),
        count=len(texts),
        dimension=encoder.dimension,
        shard_size=int(shard_size),
        dtype=dtype,
    )


def encode_shards(
    encoder: DualEncoder,
    texts: Sequence[str],
    folder: str | Path,
    *,
    ids: Sequence[str] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    dtype: ShardDtype = "float32",
    engine: ShardEngine = "local",
    workers: int = 1,
    batch_size: int = 64,
    trainer: Mapping[str, Any] | None = None,
    progress: bool = False,
    encoder_key: str | None = None,
) -> ShardSet:
    """The passage embeddings of ``texts`` in shards under ``folder``, encoding only the shards not already there.

    ``ids`` name the passages (default: their positions) and are kept beside the shards. ``dtype``: float32 or
    float16 (stored; reading gives float32 either way). ``engine``: local, processes (``workers`` CPU processes) or
    lightning (``trainer``: keyword arguments of ``lightning.Trainer``, such as ``{"accelerator": "gpu", "devices": 4}``).
    ``encoder_key``: the encoder's passage-side fingerprint, when the caller has computed it already.
    Returns the memory-mapped :class:`ShardSet`; its ``encoded`` lists the shards this call encoded.
    """
    if engine not in SHARD_ENGINES:
        raise UAEError(f"engine={engine!r}: use one of {', '.join(SHARD_ENGINES)}.")
    if int(workers) < 1 or int(batch_size) < 1:
        raise UAEError(f"workers={workers}, batch_size={batch_size}: both must be at least 1.")
    if engine == "local" and workers != 1:
        raise UAEError(f"workers={workers} with engine=local, which encodes in this process: use engine=processes for worker processes.")
    texts = list(texts)
    if not texts:
        raise UAEError("no passages to encode.")
    ids = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
    spec = shard_spec(encoder, texts, ids, shard_size=shard_size, dtype=dtype, encoder_key=encoder_key)
    target = ShardFolder.prepare(folder, spec, ids)
    todo = target.missing()
    log.info("%s: %d of %d shards to encode (%s engine)", target.folder, len(todo), len(spec.shards), engine)
    start = time.perf_counter()
    if todo and engine == "local":
        _in_this_process(encoder, texts, target, todo, batch_size=batch_size, progress=progress)
    elif todo and engine == "processes":
        _in_processes(encoder, texts, target, todo, workers=int(workers), batch_size=batch_size, progress=progress)
    elif engine == "lightning":  # every rank must reach the predict loop's barrier, with shards to do or not
        from uae.retrieval.shard_predict import predict_shards  # deferred: Lightning, for this engine only

        predict_shards(encoder, texts, target, todo, batch_size=batch_size, trainer=trainer or {}, progress=progress)
    if todo:
        log.info("%d shards encoded in %.1f s", len(todo), time.perf_counter() - start)
    shards = ShardSet.load(target.folder, verify=False, spec=spec)  # the kept shards were checked by prepare, the rest just written
    shards.encoded = tuple(s.index for s in todo)
    return shards


def _in_this_process(
    encoder: DualEncoder, texts: list[str], target: ShardFolder, todo: list[Shard], *, batch_size: int, progress: bool
) -> None:
    for shard in tqdm(todo, desc="encode shards", unit="shard", disable=not progress):
        embeddings = encoder.encode(texts[shard.start : shard.stop], "passage", batch_size=batch_size, progress=False)
        target.record(target.write(shard, embeddings.numpy()))


def _in_processes(
    encoder: DualEncoder, texts: list[str], target: ShardFolder, todo: list[Shard], *, workers: int, batch_size: int, progress: bool
) -> None:
    """``workers`` spawned processes encode and write disjoint shards; this one records them as they finish.

    At most two shards per worker are queued, so the texts are not copied into the queue all at once. The
    processes are spawned, not forked: a fork of a process whose torch thread pool has run can hang."""
    import multiprocessing

    import torch  # deferred: start-up speed

    if encoder.device.type != "cpu":
        raise UAEError(f"engine=processes encodes on CPUs, and the encoder is on {encoder.device}; use engine=lightning on GPUs.")
    if encoder.inference_runtime() != "torch":
        encoder.onnx_tower("passage")  # the export made (or found) once, here, before the workers each look for it
    threads = max(1, torch.get_num_threads() // workers)
    waiting: Iterator[Shard] = iter(todo)
    context = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(todo), desc=f"encode shards ({workers} processes)", unit="shard", disable=not progress)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(encoder, threads)) as pool:

        def submit() -> Future | None:
            shard = next(waiting, None)
            return None if shard is None else pool.submit(_encode_shard, target, shard, texts[shard.start : shard.stop], batch_size)

        running = {f for f in (submit() for _ in range(2 * workers)) if f is not None}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                target.record(future.result())
                bar.update()
                following = submit()
                if following is not None:
                    running.add(following)
    bar.close()


_WORKER: dict[str, Any] = {}  # the encoder of a worker process, set once by _start_worker


def _start_worker(encoder: DualEncoder, threads: int) -> None:
    import torch  # deferred: start-up speed

    torch.set_num_threads(threads)  # before the ONNX session, which takes torch's thread count
    _WORKER["encoder"] = encoder.eval()


def _encode_shard(target: ShardFolder, shard: Shard, texts: list[str], batch_size: int) -> dict[str, Any]:
    embeddings = _WORKER["encoder"].encode(texts, "passage", batch_size=batch_size, progress=False)
    return target.write(shard, embeddings.numpy())
