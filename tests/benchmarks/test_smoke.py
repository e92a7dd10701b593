"""Every file in benchmarks/ runs, tiny, as ``make bench`` runs it: a process that exits 0 and prints the markdown
table it promises (its header, its rows) and its ratio line. The benchmarks run only when someone reproduces
RESULTS.md, so a renamed flag or a moved function would otherwise break one unseen (it once did latency.py).

The benchmarks are found by glob: a new file in benchmarks/ without an entry in ``SMOKES`` fails here. Each entry
gives tiny arguments (tiny models, the tiny fixture or a few QASPER papers, one repeat): seconds of work after the
imports, so the numbers mean nothing; only that the benchmark runs and prints its table is checked. An entry
marked ``slow`` runs in ``make test-slow`` only.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

# Every script there (a _name.py would be a helper of theirs, not a benchmark).
BENCHMARKS = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py") if not path.name.startswith("_"))

# latency.py has no flag for the LLM's folder yet: it loads SmolLM2, converted from its GGUF package into the
# cache on a fresh clone (about 40 s). Until it has one (--llm-path), this runs it with the tiny LLM by giving the
# scorer's constructor that folder, whatever else the benchmark passes: argv is LLM_FOLDER SCRIPT ARGS...
WITH_TINY_LLM = """
import runpy, sys
from uae.llm.scorer import AnswerScorer
llm, script = sys.argv[1:3]
scorer_init = AnswerScorer.__init__
AnswerScorer.__init__ = lambda self, model_id, **kw: scorer_init(self, model_id, **{**kw, "local_path": llm})
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@dataclass(frozen=True)
class Smoke:
    """How to run one benchmark tiny, and what it must print."""

    command: Callable[[pytest.FixtureRequest, Path, Path], list[str]]  # (request, script, tmp_path) -> argv after python
    header: str  # the table's header row as printed, or its first cells (a benchmark may add columns)
    rows: int  # at least this many data rows
    ratios: tuple[str, ...]  # a pattern per ratio line, its number in the group "x"
    env: dict[str, str] | None = None  # environment variable -> the fixture whose folder it names
    slow: bool = False  # marked slow (make test-slow): more than seconds of CPU


def _fixture(request: pytest.FixtureRequest, name: str) -> str:
    return str(request.getfixturevalue(name))  # only the fixtures this benchmark needs are made


SMOKES: dict[str, Smoke] = {
    "faiss_gpu": Smoke(
        # No GPU here: --allow-cpu compares faiss-cpu with a second faiss-cpu index, and the torch scan runs on the CPU.
        lambda request, script, tmp: [
            str(script), "--passages", "2000", "--queries", "30", "--k", "10", "--allow-cpu", "--candidates", "faiss-gpu", "torch",
        ],
        "| backend | first query s (build) | search s | queries/s |",
        rows=3,
        ratios=(r"search speed torch \(cpu\) / faiss-cpu: (?P<x>[\d.]+)x",),
    ),
    "integrity": Smoke(
        lambda request, script, tmp: [str(script), "--repeat", "1", "--passages", "50"],
        "| operation | before digests | ms | now | ms | ratio | the check (digest) alone, ms |",
        rows=5,
        ratios=(r"Reading with the check takes (?P<x>[\d.]+)x to [\d.]+x the time of the plain read",),
    ),
    "latency": Smoke(
        lambda request, script, tmp: [
            "-c", WITH_TINY_LLM, _fixture(request, "tiny_lm_dir"), str(script),
            "--documents", "2", "--questions", "2", "--k", "2", "--threads", "1", "--runtimes", "torch,onnx",
            "--repeats", "1", "--batch-size", "2", "--encoder-path", _fixture(request, "tiny_encoder_dir"),
            "--cache-dir", str(tmp / "cache"),
        ],
        "| retriever | median ms | p95 ms | mean ms |",
        rows=2,
        ratios=(r"speed-up of UAE over LLM re-ranking \(ratio of medians\): (?P<x>[\d.]+)x",),
        env={"UAE_DATA_DIR": "tiny_raw_dir"},
    ),
    "reader": Smoke(
        lambda request, script, tmp: [
            str(script), "--n", "3", "--chunk", "2", "--max-new-tokens", "4", "--model", "tiny-llama",
            "--local-path", _fixture(request, "tiny_lm_gguf_dir"), "--data-dir", _fixture(request, "tiny_raw_dir"),
            "--cache-dir", str(tmp / "cache"), "--engines", "llamacpp",
        ],
        "| engine | load s | wall s | answers/s | token F1 |",
        rows=2,
        ratios=(r"llamacpp gguf / default, answers per second: (?P<x>[\d.]+)x",),
    ),
    "scale": Smoke(
        # Synthetic vectors, two indexes, no encoder (--encode-sample 0): under a second of FAISS after the imports.
        lambda request, script, tmp: [
            str(script), "--n", "2000", "--vectors", "synthetic", "--index", "Flat", "HNSW32", "--queries", "50",
            "--single", "20", "--encode-sample", "0", "--cache-dir", str(tmp / "cache"),
        ],
        "| index | search | build s | bytes | bytes/vector |",
        rows=2,
        # the last line, what a script reads: HNSW32's, the last index asked for
        ratios=(r"2000 passages, HNSW32: recall@10 [\d.]+, (?P<x>[\d.]+)x exact single-query throughput\n?$",),
    ),
    "scorer": Smoke(
        lambda request, script, tmp: [
            str(script), "--n", "6", "--contexts", "2", "--chunk", "3", "--batch-size", "8", "--device", "cpu",
            "--model", "tiny-llama", "--local-path", _fixture(request, "tiny_lm_dir"),
            "--data-dir", _fixture(request, "tiny_raw_dir"), "--cache-dir", str(tmp / "cache"),
            "--engines",  # none: the default engine rows convert the LLM to CTranslate2 (an optional extra)
        ],
        "| implementation | wall s | CPU s | triples/s | tokens/s |",
        rows=3,
        ratios=(
            r"Prefix sharing \(padded batches / prefix sharing\): \*\*(?P<x>[\d.]+)x\*\* wall time",
            r"Speed ratio \(plain / uae\): \*\*(?P<x>[\d.]+)x\*\* wall time",
        ),
    ),
    "train_step": Smoke(
        lambda request, script, tmp: [
            str(script), "--steps", "3", "--warmup", "1", "--batch-size", "2", "--max-length", "32",
            "--passage-chunk", "8", "--model-path", _fixture(request, "tiny_encoder_dir"),
            "--data-dir", _fixture(request, "shared_data"), "--documents", "3", "--tmp", str(tmp / "bench"),
        ],
        "| trainer | s/step | groups/s | peak memory (MB) |",
        rows=2,
        ratios=(r"speed ratio UAE / sentence-transformers: (?P<x>[\d.]+)x",),
        # Three processes (the two trainers each in its own) importing torch, Lightning and sentence-transformers:
        # about 28 s of CPU on a 2-core machine, more than the other three together.
        slow=True,
    ),
}


def markdown_table(text: str, header: str) -> list[list[str]]:
    """The data rows of the first table whose header row starts with ``header``, each as its cells; fails
    unless the header is followed by its separator and every row has the header's number of cells."""
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    assert at is not None, f"no table headed {header!r} in:\n{text[-3000:]}"
    width = lines[at].count("|") - 1
    assert lines[at + 1] == "|" + "---|" * width, lines[at + 1]
    rows = []
    for line in lines[at + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == width and all(cells), line
        rows.append(cells)
    return rows


def _number(cell: str) -> float | None:
    try:
        return float(cell.rstrip("x").replace(",", ""))
    except ValueError:
        return None


def test_every_benchmark_has_a_smoke_run() -> None:
    assert BENCHMARKS, "no benchmarks/*.py found"
    assert set(SMOKES) == set(BENCHMARKS), (
        f"benchmarks without a smoke entry: {sorted(set(BENCHMARKS) - set(SMOKES))}; "
        f"entries without a benchmark: {sorted(set(SMOKES) - set(BENCHMARKS))}"
    )


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=[pytest.mark.slow] if name in SMOKES and SMOKES[name].slow else []) for name in BENCHMARKS]
)
def test_benchmark_runs_tiny_and_prints_its_table(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    smoke = SMOKES.get(name)
    if smoke is None:
        pytest.fail(f"benchmarks/{name}.py has no entry in tests/benchmarks/test_smoke.py SMOKES: give it tiny arguments")
    script = ROOT / "benchmarks" / f"{name}.py"
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",  # one thread each: the test workers share the cores, and oversubscribed torch crawls
        **{key: _fixture(request, fixture) for key, fixture in (smoke.env or {}).items()},
    }
    done = subprocess.run(
        [sys.executable, *smoke.command(request, script, tmp_path)], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, f"benchmarks/{name}.py exited {done.returncode}:\n{done.stderr[-4000:]}"
    rows = markdown_table(done.stdout, smoke.header)
    assert len(rows) >= smoke.rows, rows
    for row in rows:  # every row measured something
        numbers = [n for n in map(_number, row) if n is not None]
        assert numbers and all(math.isfinite(n) and n >= 0 for n in numbers), row
    for pattern in smoke.ratios:
        found = re.search(pattern, done.stdout)
        assert found, f"no line matching {pattern!r} in:\n{done.stdout[-3000:]}"
        assert math.isfinite(float(found.group("x"))), found.group(0)
