"""Plots of runs and sweeps (uae.analysis.plots) and finding the newest run (uae.analysis.jobs), on the
session's tiny sweep (tests/conftest.py tiny_sweep) and on hand-made tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


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
