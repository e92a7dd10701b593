"""Plots of run and sweep folders: training curves, metrics against a swept value, retrievers side by side.

    python -m uae.analysis.plots RUN_OR_SWEEP_DIR [...] --out experiments/qasper/plots
    python -m uae.analysis.plots --together main RUN_DIR RUN_DIR [...] --out ...   # one bar chart of those runs

The notebook (notebooks/inspect_runs.ipynb) draws the same figures inline; ``make reproduce`` writes
them as PNG files next to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from uae.analysis.jobs import load_curves, load_runs, swept_keys
from uae.storage.atomic import atomic_path


def plot_curves(curves: pd.DataFrame, ax_loss, ax_val) -> None:
    """train/loss and val/map against the step, one line per job."""
    for job, frame in curves.groupby("job"):
        if "train/loss" in frame:
            loss = frame.dropna(subset=["train/loss"])
            ax_loss.plot(loss["step"], loss["train/loss"], label=str(job))
        if "val/map" in frame:
            val = frame.dropna(subset=["val/map"])
            ax_val.plot(val["step"], val["val/map"], marker="o", label=str(job))
    ax_loss.set(xlabel="step", ylabel="train/loss", title="training loss")
    ax_val.set(xlabel="step", ylabel="val/map", title="validation MAP")
    if not ax_val.lines:  # an empty frame would read as a plotting bug
        ax_val.text(0.5, 0.5, "no validation in these runs\n(train.validate=false)", ha="center", va="center",
                    transform=ax_val.transAxes)
    for ax in (ax_loss, ax_val):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")


def plot_sweep(table: pd.DataFrame, key: str, ax, metrics: tuple[str, ...] = ("recall@1", "map", "token_f1")) -> None:
    """Each metric against the swept value (numeric axes sorted; other values in job order)."""
    ok = table[table["status"] == "ok"] if "status" in table else table
    # A job that also evaluated its base encoder has a zero_shot/ row with the same swept value:
    # drawn as its own dashed line, so that each value's gain is the gap between the two.
    base = ok["job"].astype(str).str.endswith("zero_shot") if "job" in ok else pd.Series(False, index=ok.index)
    values = pd.to_numeric(ok[key], errors="coerce")
    numeric = bool(values.notna().all())
    x = values if numeric else ok[key].astype(str)
    order = x.sort_values(kind="stable").index if numeric else x.index
    for k, metric in enumerate(m for m in metrics if m in ok and ok[m].notna().any()):
        for part, style, suffix in ((~base, "-", ""), (base, "--", " (zero-shot)")):
            rows = [i for i in order if part.loc[i]]
            if rows:
                ax.plot(x.loc[rows], ok.loc[rows, metric], style, marker="o", color=f"C{k}", label=metric + suffix)
    ax.set(xlabel=key.removeprefix("override:"), ylabel="dev score", title=f"sweep over {key.removeprefix('override:')}")
    if numeric and (values > 0).all() and values.max() / values.min() >= 10:
        ax.set_xscale("log")
    ax.legend(fontsize="small")


def plot_retrievers(table: pd.DataFrame, ax, metrics: tuple[str, ...] = ("hit@1", "recall@1", "map", "token_f1")) -> None:
    """Grouped bars: one group per metric, one bar per retriever."""
    present = [m for m in metrics if m in table and table[m].notna().any()]
    rows = table.dropna(subset=["retriever"])
    width = 0.8 / max(1, len(rows))
    unique = rows["retriever"].is_unique
    for i, (_, row) in enumerate(rows.iterrows()):
        label = row["retriever"] if unique else f"{row['retriever']} ({row['job']})"
        ax.bar([j + i * width for j in range(len(present))], [row[m] for m in present], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(present))], present)
    ax.set(ylabel="dev score", title="retrievers")
    ax.legend(fontsize="small")


def save_figures(folders: list[Path], out: Path, together: str | None = None) -> list[Path]:
    """Curves, sweep plots and a retriever bar chart per folder; with ``together``, only one bar chart
    of all the folders' retrievers (the main table's runs), saved as ``<together>-retrievers.png``."""
    import matplotlib  # deferred: start-up speed

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: start-up speed

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if together:
        table = pd.concat([load_runs(f).assign(job=f.name) for f in folders], ignore_index=True)
        table = table[~table["retriever"].isna()]
        fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(table)), 3.5))
        plot_retrievers(table, ax)
        return [_save(fig, out / f"{together}-retrievers.png")]
    for folder in folders:
        table, curves = load_runs(folder), load_curves(folder)
        name = folder.name if folder.name not in ("", ".") else "run"
        if not curves.empty:
            fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
            plot_curves(curves, a, b)
            written.append(_save(fig, out / f"{name}-curves.png"))
        for key in swept_keys(table):
            fig, ax = plt.subplots(figsize=(5, 3.5))
            plot_sweep(table, key, ax)
            written.append(_save(fig, out / f"{name}-{key.removeprefix('override:').replace('.', '_')}.png"))
        if table.get("retriever") is not None and table["retriever"].notna().sum() > 1:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            plot_retrievers(table, ax)
            written.append(_save(fig, out / f"{name}-retrievers.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    import matplotlib.pyplot as plt  # deferred: start-up speed

    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="run or sweep folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--together", metavar="NAME", help="one bar chart of all the folders' retrievers, NAME-retrievers.png")
    args = parser.parse_args(argv)
    for path in save_figures(args.folders, args.out, args.together):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
