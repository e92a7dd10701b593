"""Two more CPU inference engines for the teacher, measured beside the default: OpenVINO and ONNX Runtime GenAI.

    python experiments/qasper/engines/cpu_engines.py --n 200 --skip-plain \
        --engines openvino:float32 openvino:int8 ortgenai:int4 ortgenai:int8 ortgenai:int4-logits

Benchmark only (issue 34): nothing here is part of ``uae``. It runs benchmarks/scorer.py as it is, with
its arguments, after teaching ``AnswerScorer`` two more ``--engines`` names: a row ``openvino:TYPE`` or
``ortgenai:TYPE`` is an ``AnswerScorer(engine="ctranslate2")`` (its tokenisation, its truncation, its
``_run_engine``) whose ``.engine`` is replaced by a :class:`uae.llm.engines.TokenScorer` from this file,
so that the rows alternate with the default in one run like the CTranslate2 rows do. ``--engines none``
(or nothing) gives no engine rows.

Both engines keep one sequence's KV cache between calls and reuse the longest common prefix with the
next sequence (``keeps_prefixes = True`` makes ``_run_engine`` order items so that sequences sharing a
passage, then a prompt, sit together): the prompt is encoded once for its answers, a passage once for
the questions asked of it, the system turn once. One sequence per forward (batch 1).

The head: every engine here runs it on the rows that predict target tokens only. By default (types
without a suffix) the engine returns those hidden rows and the float32 head (the tied embedding, read
from the HF folder) runs here in numpy once per ``score()`` call: a per-sequence head reads the 113 MB
matrix for every sequence, 20 ms for 8 rows on this CPU, which matters when an answer-only forward is
~15 tokens.

OpenVINO (``openvino:float32|int8``): the stateful IR that optimum-intel exports (KV cache inside the
model as variables), loaded with the openvino runtime alone. The exported model computes
full-vocabulary logits at every position; its graph is edited at load time (about 15 lines of
openvino.opset13): the final hidden states are gathered at the target rows and returned
(``-graphhead`` types: those rows go on through the IR's own ``lm_head``, ``LogSoftmax`` and a gather of
the target ids, and the log-probs come out). Prefix reuse: ``InferRequest.query_state()`` gives the KV variables; they are
cut back to the common prefix with a ROI tensor (no copy), or reset when nothing is shared.
``int8`` is NNCF's int8_asym per-channel weight compression (``--weight-format int8``). Both run with
``KV_CACHE_PRECISION=f32``: the CPU plugin's default cache is f16 for the float32 IR (1.6e-3 nats/token
off the reference over 40 triples) and u8 for the int8 IR, which wrecks the utilities (10 nats/token
off, Pearson 0.72 over 40 triples; 0.29 and 0.9999 with an f32 cache).

ONNX Runtime GenAI (``ortgenai:int4|int8``): the model builder's CPU model (MatMulNBits weights,
accuracy_level 4: int8 activations), driven by ``og.Generator``: ``append_tokens`` runs the new tokens,
``rewind_to`` cuts the KV cache back to the common prefix. Built with ``exclude_lm_head=true`` the model
returns hidden states; the generator insists on a ``logits`` output of ``vocab_size`` columns, so the
config is overlaid to call the hidden states ``logits`` with 576 columns (the builder's
``prune_lm_head`` keeps only the last position's logits: no use for scoring).
``ortgenai:int4-logits`` is the builder's default model instead: its int4 head gives full-vocabulary
logits at every appended position (what the engine forces without the overlay), log-softmaxed here.

Result (2026-12-06, 2-core AMD EPYC, AVX2 without AVX-512/VNNI, quiet machine, default 590-642 tokens/s):
OpenVINO float32 0.83-0.85x the default (utilities exact: 1.8e-5), OpenVINO int8 0.74-0.77x, ORT GenAI
int8 0.69-0.74x, ORT GenAI int4 1.17x (0.84x with a per-sequence head) but its utilities move (max 1.8
nats/token, Spearman 0.88). Both engines reuse prefixes as well as the default shares them (14895 vs
14746 tokens computed), so only per-token speed counts, and at batch 1 none is much faster per token
than eager PyTorch on this CPU.

Conversions (offline, from the HF folder AnswerScorer loads; optimum-intel 2.2 needs transformers<5.6,
so it runs in a side virtualenv, /tmp/ovconv, which also holds the GenAI builder's onnx-ir)::

    optimum-cli export openvino -m .cache/models/HuggingFaceTB--SmolLM2-135M-Instruct \
        --task text-generation-with-past --weight-format {fp32,int8} .cache/models/SmolLM2-135M-Instruct-ov-{fp32,int8}
    python -m onnxruntime_genai.models.builder -m HuggingFaceTB/SmolLM2-135M-Instruct \
        -i .cache/models/HuggingFaceTB--SmolLM2-135M-Instruct -p {int4,int8} -e cpu -c /tmp/ortgenai-cache \
        -o .cache/models/SmolLM2-135M-Instruct-ortgenai-{int4,int8}-nohead --extra_options exclude_lm_head=true
    (and -p int4 without --extra_options -> .cache/models/SmolLM2-135M-Instruct-ortgenai-int4)
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]  # the repository (this file: experiments/qasper/engines/)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from uae.llm.engines import cpu_threads
from uae.llm.prefix import common_prefix

MODELS = "SmolLM2-135M-Instruct"  # the converted folders' stem under <cache_dir>/models
EXTRA = {
    "openvino": {
        "float32": "ov-fp32",
        "int8": "ov-int8",
        "float32-graphhead": "ov-fp32",
        "int8-graphhead": "ov-int8",
    },
    "ortgenai": {
        "int4": "ortgenai-int4-nohead",
        "int8": "ortgenai-int8-nohead",
        "int4-logits": "ortgenai-int4",
    },
}


class _PrefixReuse:
    """One live sequence in the engine's KV cache; each new sequence keeps its common prefix with it
    (never past ``start - 1``: the row predicting the first target token must be computed)."""

    name = "?"
    compute_type = "?"
    keeps_prefixes = True  # _run_engine orders items so that sharing sequences are adjacent

    def __init__(self) -> None:
        self.live: list[int] = []
        self.computed = 0  # tokens run through the model (for the report)
        self.head: np.ndarray | None = (
            None  # [V, H] float32: the engine returns hidden rows, the head runs here
        )

    def score(self, sequences: Sequence[Sequence[int]], target_starts: Sequence[int]) -> np.ndarray:
        sums = np.empty(len(sequences), dtype=np.float64)
        rows: list[np.ndarray] = []
        for i, (seq, start) in enumerate(zip(sequences, target_starts, strict=True)):
            seq = [int(t) for t in seq]
            keep = min(common_prefix([self.live, seq]), start - 1)
            if keep < len(self.live):
                self._cut(keep)
            out = self._forward(seq, keep, start)
            self.live = seq
            self.computed += len(seq) - keep
            if self.head is None:
                sums[i] = float(np.sum(out, dtype=np.float64))
            else:
                rows.append(np.array(out, dtype=np.float32))  # a copy: the engine reuses its buffer
        if self.head is not None:  # one head matmul per call (reading the 113 MB head once, not per sequence)
            ids = np.concatenate([np.asarray(seq[start:]) for seq, start in zip(sequences, target_starts)])
            logp = np.empty(len(ids), dtype=np.float64)
            hidden = np.concatenate(rows)
            for k in range(0, len(ids), 1024):
                logp[k : k + 1024] = _target_logp(hidden[k : k + 1024] @ self.head.T, ids[k : k + 1024])
            bounds = np.cumsum([0] + [len(r) for r in rows])
            sums[:] = [logp[a:b].sum() for a, b in itertools.pairwise(bounds)]
        return sums

    def _cut(self, keep: int) -> None:  # the KV cache back to its first ``keep`` tokens
        raise NotImplementedError

    def _forward(self, seq: list[int], keep: int, start: int) -> np.ndarray:  # log p of seq[start:]
        raise NotImplementedError


class OpenVINOEngine(_PrefixReuse):
    """optimum-intel's stateful OpenVINO IR, its head cut down to the target rows."""

    name = "openvino"

    def __init__(self, folder: Path, hf_path: Path, compute_type: str, threads: int = 0) -> None:
        import openvino as ov
        import openvino.opset13 as ops

        super().__init__()
        self.compute_type = compute_type
        core = ov.Core()
        model = core.read_model(str(folder / "openvino_model.xml"))
        old = model.get_results()[0]
        head = old.input_value(0).get_node()  # MatMul(final norm [B,S,H], lm_head weight [V,H])
        if head.get_type_name() != "MatMul":
            raise RuntimeError(
                f"{folder}: expected the logits to come from a MatMul, found {head.get_type_name()}"
            )
        hidden, weight = head.input_value(0), head.input_value(1)
        width = hidden.get_partial_shape()[2].get_length()
        rows = ops.parameter([-1], ov.Type.i64, name="target_rows")
        ids = ops.parameter([-1], ov.Type.i64, name="target_ids")
        rows.output(0).set_names({"target_rows"})
        ids.output(0).set_names({"target_ids"})
        flat = ops.reshape(hidden, ops.constant(np.array([-1, width], dtype=np.int64)), False)
        picked = ops.gather(flat, rows, ops.constant(np.int64(0)))
        if compute_type.endswith(
            "-graphhead"
        ):  # lm_head (the IR's precision), LogSoftmax, gather: in the graph
            logits = ops.matmul(picked, weight, head.get_transpose_a(), head.get_transpose_b())
            logp = ops.log_softmax(logits, 1)
            got = ops.gather(
                logp, ops.unsqueeze(ids, ops.constant(np.int64(1))), ops.constant(np.int64(1)), 1
            )
            out = ops.result(ops.squeeze(got, ops.constant(np.int64(1))))
            model.add_parameters([rows, ids])
        else:  # the hidden rows only; the float32 head runs once per score() call (_PrefixReuse.score)
            out = ops.result(picked)
            model.add_parameters([rows])
            self.head = _tied_head(hf_path)
        out.output(0).set_names({"target_out"})
        model.add_results([out])
        model.remove_result(old)
        config = {
            "INFERENCE_NUM_THREADS": threads or cpu_threads(), "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",  # the default on AVX2 anyway (bf16 needs AVX-512 BF16 / AMX)
            "KV_CACHE_PRECISION": "f32",  # the defaults (f16; u8 for weight-compressed models) move utilities
        }  # fmt: skip
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self._ov = ov

    def _cut(self, keep: int) -> None:
        if keep == 0:
            self.request.reset_state()
            return
        ov = self._ov
        for state in self.request.query_state():  # [batch, kv heads, tokens, head dim]
            t = state.state
            b, h, _, d = t.shape
            state.state = ov.Tensor(t, ov.Coordinate([0, 0, 0, 0]), ov.Coordinate([b, h, keep, d]))

    def _forward(self, seq: list[int], keep: int, start: int) -> np.ndarray:
        n = len(seq)
        feed = {
            "input_ids": np.array([seq[keep:]], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "position_ids": np.arange(keep, n, dtype=np.int64)[None],
            "beam_idx": np.zeros(1, dtype=np.int32),
            "target_rows": np.arange(start - 1 - keep, n - 1 - keep, dtype=np.int64),
        }
        if self.head is None:
            feed["target_ids"] = np.array(seq[start:], dtype=np.int64)
        return self.request.infer(feed)["target_out"]


class ORTGenAIEngine(_PrefixReuse):
    """onnxruntime-genai's Generator: append_tokens for the new tokens, rewind_to for the shared prefix."""

    name = "ortgenai"

    def __init__(
        self, folder: Path, hf_path: Path, compute_type: str, max_length: int, threads: int = 0
    ) -> None:
        import onnxruntime_genai as og

        super().__init__()
        self.compute_type = compute_type
        settings = json.loads((folder / "genai_config.json").read_text())["model"]
        decoder: dict = {"session_options": {"intra_op_num_threads": threads or cpu_threads()}}
        self.hidden = "logits" not in compute_type
        overlay: dict = {"decoder": decoder}
        if self.hidden:  # exclude_lm_head: the generator wants a "logits" output of vocab_size columns
            decoder["outputs"] = {"logits": "hidden_states"}
            overlay["vocab_size"] = settings["decoder"]["hidden_size"]
            self.head = _tied_head(hf_path)  # [V, H] float32
        config = og.Config(str(folder))
        config.overlay(json.dumps({"model": overlay}))
        self.model = og.Model(config)
        self.params = og.GeneratorParams(self.model)
        self.params.set_search_options(max_length=max_length + 8)  # the KV buffer (past_present_share_buffer)
        self.generator = og.Generator(self.model, self.params)
        self._og = og

    def _cut(self, keep: int) -> None:
        self.generator.rewind_to(keep)

    def _forward(self, seq: list[int], keep: int, start: int) -> np.ndarray:
        self.generator.append_tokens(np.array(seq[keep:], dtype=np.int32))
        out = self.generator.get_output("hidden_states" if self.hidden else "logits")[
            0
        ]  # [new tokens, H or V]
        rows = out[start - 1 - keep : len(seq) - 1 - keep]
        return (
            rows if self.hidden else _target_logp(rows, seq[start:])
        )  # hidden rows: the head runs in score()


def _target_logp(logits: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """log_softmax(logits)[row, ids[row]], float64, from float32 logits [rows, V]."""
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0].astype(np.float64) + np.log(np.exp(logits - top).sum(axis=1, dtype=np.float64))
    return logits[np.arange(len(logits)), ids].astype(np.float64) - lse


def _tied_head(hf_path: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    tensors = load_file(str(hf_path / "model.safetensors"))
    w = tensors.get("lm_head.weight", tensors.get("model.embed_tokens.weight"))
    return np.ascontiguousarray(w.astype(np.float32))


def build_engine(name: str, compute_type: str, hf_path: Path, cache_dir: str | os.PathLike, max_length: int):
    folder = Path(cache_dir) / "models" / f"{MODELS}-{EXTRA[name][compute_type]}"
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: convert first (this file's docstring has the commands)")
    if name == "openvino":
        return OpenVINOEngine(folder, hf_path, compute_type)
    return ORTGenAIEngine(folder, hf_path, compute_type, max_length)


BUILT: dict[str, _PrefixReuse] = {}


def install() -> None:
    """Teach uae.llm.scorer.AnswerScorer the names openvino and ortgenai, for benchmarks/scorer.py's rows."""
    import uae.llm.scorer as module

    base = module.AnswerScorer

    class BenchScorer(base):  # type: ignore[misc, valid-type]
        def __init__(self, model_id, *, engine="hf", compute_type="auto", **kwargs):
            extra = engine if engine in EXTRA else None
            if extra and compute_type not in EXTRA[extra]:
                raise SystemExit(f"{engine}:{compute_type}: use one of {', '.join(EXTRA[extra])}")
            # a CTranslate2 scorer gives the tokenizer, the truncation and _run_engine; its engine is replaced
            super().__init__(model_id, engine="ctranslate2" if extra else engine,
                             compute_type="float32" if extra else compute_type, **kwargs)  # fmt: skip
            if extra:
                self.engine = build_engine(
                    extra, compute_type, self.path, kwargs["cache_dir"], self.max_length
                )
                BUILT[f"{extra} {compute_type}"] = self.engine
                self.engine_name, self.compute_type = extra, compute_type

    module.AnswerScorer = BenchScorer


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--engines" in argv:  # "--engines none": no engine rows (benchmarks/scorer.py takes an empty list)
        argv = [a for a in argv if a != "none"]
    install()
    import scorer as bench  # benchmarks/scorer.py

    code = bench.main(argv)
    for name, engine in BUILT.items():
        print(f"{name}: ran {engine.computed} tokens through the model (prefix reuse, all passes).")
    return code


if __name__ == "__main__":
    sys.exit(main())
