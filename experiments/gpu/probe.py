"""What the lent GPU machine has, before anything is timed (the first step of experiments/gpu/check.sh).

    python experiments/gpu/probe.py [--env FILE] [--timeout 60]

Prints a markdown table (GPU, driver, Python, torch and CUDA, transformers, lightning, and each optional
engine: vllm, ctranslate2 with the cuBLAS 12 it loads for CUDA, faiss and its GPUs) and writes ``--env``
FILE, KEY=VALUE lines that check.sh reads to choose each step's arguments: HAVE_CUDA, HAVE_VLLM,
HAVE_CT2, CT2_CUDA, HAVE_FAISS, FAISS_GPU (0 or 1) and LIB_DIRS (folders to put on LD_LIBRARY_PATH).

Why a probe: each optional package either travels as wheels (experiments/gpu/README.md says what they
weigh) or is already there, and some load libraries that may be missing: CTranslate2 4.8's CUDA build
opens libcublas.so.12 on first use, and the machine's CUDA is 13. Each import runs in its own process with
a timeout, so a package that crashes or hangs on import costs a row, not the check. On a machine without
a GPU it runs too, and says so (HAVE_CUDA=0): the test suite runs it that way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Each row: (name, code printed by a child process, which prints 'version | detail'); a failure is the row.
IMPORTS = {
    "torch": "import torch; c = torch.cuda.is_available(); "
    "print(torch.__version__, '|', f'CUDA {torch.version.cuda}, ' + (f'{torch.cuda.device_count()} GPU(s): ' "
    "+ torch.cuda.get_device_name(0) + f', bf16 {torch.cuda.is_bf16_supported()}' if c else 'no CUDA device'))",
    "transformers": "import transformers; print(transformers.__version__, '|')",
    "lightning": "import lightning; print(lightning.__version__, '|')",
    "vllm": "import vllm; print(vllm.__version__, '|')",
    "ctranslate2": "import ctranslate2 as c; print(c.__version__, '|', f'{c.get_cuda_device_count()} CUDA device(s)')",
    "faiss": "import faiss; g = faiss.get_num_gpus() if hasattr(faiss, 'StandardGpuResources') else 0; "
    "print(faiss.__version__, '|', f'{g} GPU(s)' + ('' if hasattr(faiss, 'StandardGpuResources') else ' (faiss-cpu)'))",
}


def library_dirs() -> tuple[list[str], list[str]]:
    """Library folders of the carried wheels (under the PYTHONPATH entries: RAPIDS' lib64, NVIDIA's lib) and of the
    image's own NVIDIA packages, which a wheel installed with --target cannot find through its RPATH."""

    def found(roots: list[Path], patterns: tuple[str, ...]) -> list[str]:
        dirs = {str(d) for root in roots for pattern in patterns for d in root.glob(pattern) if d.is_dir()}
        return sorted(d for d in dirs if any(Path(d).glob("*.so*")))

    carried_roots = [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    image_roots = [Path(p) for p in sys.path if p and Path(p) not in carried_roots]
    return found(carried_roots, ("*/lib64", "nvidia/*/lib")), found(
        image_roots, ("nvidia/*/lib", "nvidia/*/lib64")
    )


def find_cublas12(dirs: list[str]) -> str | None:
    """Where libcublas.so.12 is, if anywhere: the loader's own search, then the usual CUDA folders and ``dirs``."""
    import ctypes

    try:
        ctypes.CDLL("libcublas.so.12")
        return "(the loader's search path)"
    except OSError:
        pass
    places = [*dirs, *map(str, sorted(Path("/usr/local").glob("cuda*/lib64"))), "/usr/lib/x86_64-linux-gnu"]
    return next((d for d in places if (Path(d) / "libcublas.so.12").exists()), None)


def run(code: str, env: dict[str, str], timeout: float) -> tuple[bool, str, str]:
    """(imported, version, detail) from a child process, or (False, '', why it failed)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, "", f"import did not finish in {timeout:.0f} s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return False, "", last[:200]
    version, _, detail = done.stdout.strip().splitlines()[-1].partition("|")
    return True, version.strip(), detail.strip()


def gpu_line() -> str:
    if not shutil.which("nvidia-smi"):
        return "no nvidia-smi"
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return done.stdout.strip().replace("\n", "; ") or done.stderr.strip()[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", type=Path, help="write KEY=VALUE lines for check.sh here")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per import")
    args = parser.parse_args(argv)

    carried, image = library_dirs()
    cublas12 = find_cublas12([*carried, *image])
    # LD_LIBRARY_PATH only when something carried ships libraries, or cuBLAS 12 lies off the loader's path: else the
    # image's torch loads exactly what it always does.
    dirs = [
        *carried,
        *(image if carried else []),
        *([cublas12] if cublas12 and cublas12.startswith("/") else []),
    ]
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": ":".join([*dirs, os.environ.get("LD_LIBRARY_PATH", "")]).strip(":"),
    }
    with ThreadPoolExecutor(len(IMPORTS)) as pool:  # each in its own process: side by side
        found = dict(zip(IMPORTS, pool.map(lambda code: run(code, env, args.timeout), IMPORTS.values())))
    ok = {name: row[0] for name, row in found.items()}
    cuda = ok["torch"] and "no CUDA device" not in found["torch"][2]
    ct2_gpus = ok["ctranslate2"] and not found["ctranslate2"][2].startswith("0 ")
    faiss_gpus = ok["faiss"] and not found["faiss"][2].startswith("0 ")
    flags = {
        "HAVE_CUDA": cuda,
        "HAVE_VLLM": ok["vllm"] and cuda,
        "HAVE_CT2": ok["ctranslate2"],
        "CT2_CUDA": ct2_gpus and cublas12 is not None,
        "HAVE_FAISS": ok["faiss"],
        "FAISS_GPU": faiss_gpus,
    }

    print("| what | found |\n|---|---|")
    print(f"| GPU (nvidia-smi) | {gpu_line()} |")
    print(f"| Python | {sys.version.split()[0]} ({sys.executable}) |")
    for name, (imported, version, detail) in found.items():
        print(
            f"| {name} | {(version + (', ' + detail if detail else '')) if imported else 'not importable: ' + detail} |"
        )
    print(
        f"| cuBLAS 12 (CTranslate2 4.8's CUDA) | {cublas12 or 'not found (CTranslate2 cannot run on CUDA here)'} |"
    )
    print(
        f"| library folders on LD_LIBRARY_PATH for (a), (b) | {len(dirs)} ({len(carried)} of carried wheels) |"
    )
    print("\n" + ", ".join(f"{key}={int(value)}" for key, value in flags.items()))
    if args.env:
        lines = [f"{key}={int(value)}" for key, value in flags.items()]
        lines.append("LIB_DIRS=" + ":".join(dirs))
        args.env.parent.mkdir(parents=True, exist_ok=True)
        args.env.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
