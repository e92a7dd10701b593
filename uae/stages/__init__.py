"""Pipeline stages that ``python -m uae.run stages=[...]`` runs in order, sharing one state dict.

Each stage reads the composed config and what earlier stages left in ``state``, and writes its
outputs (caches, run-folder files) itself, so any stage can be run alone on caches made earlier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from uae.stages.evaluate import stage_evaluate
from uae.stages.utility import stage_utility

Stage = Callable[[DictConfig, dict[str, Any]], None]

# Canonical order: utility -> fit -> evaluate -> report (fit and report arrive with training).
STAGES: dict[str, Stage] = {"utility": stage_utility, "evaluate": stage_evaluate}
