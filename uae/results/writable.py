"""A Hydra callback that makes sure the run (or sweep) folder can be written, before Hydra writes into it.

Hydra creates the folder and writes its ``.hydra/`` files before the job starts, so a folder nobody can
write to would end in Hydra's traceback, outside ``uae.run``'s error handling. This check runs first
(``conf/hydra/default.yaml``) and stops with the usual one-paragraph error and exit status 2.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class RunFolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(config, "hydra.sweep.dir")


def check_writable(config: DictConfig, key: str) -> None:
    """Create the folder ``key`` names and write a file in it; exit 2 with the key to change if that fails."""
    from hydra.core.hydra_config import HydraConfig  # deferred: start-up speed

    HydraConfig.instance().set_config(config)  # so that ${hydra:...} in the folder's name resolves
    folder = Path(str(OmegaConf.select(config, key)))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".uae-write-check."):
            pass
    except OSError as exc:
        print(
            f"\nerror: cannot write the run folder {folder} ({exc.strerror or exc}). Give this run a folder it "
            f"can write: {key}=PATH (or move them all with paths.log_dir=PATH).",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(2)
