"""notebooks/inspect_runs.ipynb, executed headless on a tiny sweep: its table holds the jobs' numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, tiny_lm_dir: Path, tiny_raw_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    sweep = tmp / "sweep"
    args = [
        sys.executable, "-m", "uae.run", "-m", "+experiment=qasper_minilm", "stages=[utility,fit,evaluate]",
        f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp / 'cache'}", "retrieval.progress=false",
        f"data.dir={tiny_raw_dir}", "data.train_split=dev", "utility.splits=[dev]", f"utility.table_dir={tmp / 'tables'}",
        f"model.encoder.local_path={tiny_encoder_dir}", "model.encoder.model_id=tiny-bert",
        f"candidates.base.encoder.local_path={tiny_encoder_dir}", "candidates.base.encoder.model_id=tiny-bert",
        f"llm.scorer.local_path={tiny_lm_dir}", "llm.scorer.model_id=tiny-llama", "candidates.size=3",
        "train.batch_size=2", "train.lr=1e-3", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "logger=csv",
        "loss.temperature=0.05,0.5", "reader=none",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep


def test_notebook_table_holds_every_jobs_numbers(tiny_sweep: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "inspect_runs.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("print('TABLE' + table.to_json(orient='records'))"))
    os.environ["UAE_RUN_DIR"] = str(tiny_sweep)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        del os.environ["UAE_RUN_DIR"]
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    every = json.loads(printed.split("TABLE", 1)[1])
    # each job evaluated its fine-tuned encoder and (qasper_minilm: evaluate.zero_shot) the base one
    assert sorted(r["job"] for r in every) == ["0", "0/zero_shot", "1", "1/zero_shot"]
    rows = [r for r in every if r["retriever"] == "minilm+uae"]
    by_temperature = {float(r["override:loss.temperature"]): r for r in rows}
    assert set(by_temperature) == {0.05, 0.5}
    for job in ("0", "1"):
        result = json.loads((tiny_sweep / job / "results.json").read_text())
        row = by_temperature[result["config"]["loss"]["temperature"]]
        for metric in ("hit@1", "recall@1", "map", "mrr", "ndcg@10"):
            assert row[metric] == pytest.approx(result["metrics"][metric])
        assert row["retriever"] == "minilm+uae" and row["train_minutes"] > 0
    # every plotting cell ran: curves from the CSV logger, one sweep plot, and the summary exists
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3
    assert (tiny_sweep / "summary.md").is_file()


def test_plots_cli_writes_pngs(tiny_sweep: Path, tmp_path: Path) -> None:
    from uae.analysis.plots import main

    assert main([str(tiny_sweep), "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["sweep-curves.png", "sweep-loss_temperature.png", "sweep-retrievers.png"]
    assert all((tmp_path / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    together = tmp_path / "together"
    assert main([str(tiny_sweep / "0"), str(tiny_sweep / "1"), "--together", "main", "--out", str(together)]) == 0
    assert [p.name for p in together.glob("*.png")] == ["main-retrievers.png"]


def test_sweep_plot_draws_zero_shot_as_its_own_line(tiny_sweep: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uae.analysis.jobs import load_runs
    from uae.analysis.plots import plot_sweep

    table = load_runs(tiny_sweep)
    fig, ax = plt.subplots()
    plot_sweep(table, "override:loss.temperature", ax, metrics=("map",))
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"map", "map (zero-shot)"} and lines["map (zero-shot)"].get_linestyle() == "--"
    for label, folder in (("map", "{}"), ("map (zero-shot)", "{}/zero_shot")):
        expected = [json.loads((tiny_sweep / folder.format(job) / "results.json").read_text())["metrics"]["map"]
                    for job in ("0", "1")]  # temperatures 0.05 < 0.5: job order is x order
        assert list(lines[label].get_xdata()) == [0.05, 0.5] and list(lines[label].get_ydata()) == pytest.approx(expected)
    plt.close(fig)


def test_curves_say_when_no_run_validated() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from uae.analysis.plots import plot_curves

    trained = pd.DataFrame({"job": ["0", "0"], "step": [4, 9], "train/loss": [3.9, 3.7]})
    validated = pd.concat([trained, pd.DataFrame({"job": ["0"], "step": [9], "val/map": [0.41]})], ignore_index=True)
    for curves, expect_val in ((trained, False), (validated, True)):
        fig, (ax_loss, ax_val) = plt.subplots(1, 2)
        plot_curves(curves, ax_loss, ax_val)
        assert list(ax_loss.lines[0].get_ydata()) == [3.9, 3.7]
        assert bool(ax_val.lines) == expect_val
        assert any("no validation" in t.get_text() for t in ax_val.texts) != expect_val
        plt.close(fig)


def test_latest_folder_is_the_newest_run_or_its_sweep(tmp_path: Path) -> None:
    import time

    from uae.analysis.jobs import latest_folder

    with pytest.raises(FileNotFoundError, match="make run"):
        latest_folder(tmp_path)
    old = tmp_path / "exp" / "runs" / "t1"
    (old / "zero_shot").mkdir(parents=True)
    (old / "results.json").write_text("{}")
    time.sleep(0.01)
    (old / "zero_shot" / "results.json").write_text("{}")
    assert latest_folder(tmp_path) == old  # zero_shot/ belongs to its run
    sweep = tmp_path / "exp" / "multiruns" / "t2"
    (sweep / "1").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("")
    time.sleep(0.01)
    (sweep / "1" / "results.json").write_text("{}")
    assert latest_folder(tmp_path) == sweep
