"""Pipeline stages that ``python -m uae.run stages=[...]`` runs in order, sharing one state dict.

Each stage reads the composed config and what earlier stages left in ``state``, and writes its
outputs (caches, run-folder files) itself, so any stage can be run alone on caches made earlier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from uae.stages.evaluate import stage_evaluate
from uae.stages.fit import stage_fit
from uae.stages.report import stage_report
from uae.stages.utility import stage_utility

Stage = Callable[[DictConfig, dict[str, Any]], None]

# Canonical order: whatever order ``stages=`` lists them in, they run as utility -> fit -> evaluate -> report.
STAGES: dict[str, Stage] = {"utility": stage_utility, "fit": stage_fit, "evaluate": stage_evaluate, "report": stage_report}
