"""The fit stage: train the dual encoder on the utility table with ``loss=``, export the best checkpoint.

The best checkpoint (by ``val/map``, else the last) is exported as a Hugging Face folder in the run
folder, ``encoder/``; the evaluate stage then loads it through ``model.encoder.local_path`` exactly as
it loads a base model, so a fine-tuned encoder is scored by the same code as a zero-shot one.
"""

from __future__ import annotations

import logging
import signal
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from omegaconf import DictConfig, OmegaConf

from uae.core.build import build, to_dict
from uae.core.config import project_path
from uae.core.errors import UAEError
from uae.data.loading import load_split
from uae.results.cards import command_line, model_card
from uae.results.folder import write_card
from uae.stages.labels import apply_labels, skip_answer_types
from uae.stages.tables import train_table, utility_questions
from uae.stages.utility_scale import apply_utility_scale
from uae.storage.fingerprint import fingerprint
from uae.table.groups import table_spec, training_groups
from uae.training.clock import FitClock
from uae.training.datamodule import TrainingDataModule
from uae.training.module import RetrieverModule

log = logging.getLogger("uae.run")


def stage_fit(cfg: DictConfig, state: dict[str, Any]) -> None:
    splits = state.setdefault("splits", {})
    train_split = load_split(cfg, cfg.data.train_split, splits)
    questions = [q.question_id for q in utility_questions(train_split)]
    table = train_table(cfg, train_split, questions, state)
    spec = table_spec(table)
    state["utility_table"] = {  # into results.json: the table's own record of its LLM, not the config's
        "path": project_path(table),
        "given": bool(cfg.utility.get("table")),
        "scorer": (spec.get("scorer") or {}).get("model_id"),
        "spec": fingerprint(spec),
    }
    if state["utility_table"]["given"]:
        log.info("fit: utility.table=%s used as given (scorer %s)", table, state["utility_table"]["scorer"])
    groups, state["labels"] = apply_labels(cfg, train_split, training_groups(train_split, table, questions, spec=spec))
    skipped = list(cfg.train.get("skip_answer_types") or [])
    groups, state["labels"]["skipped_by_answer_type"] = skip_answer_types(train_split, groups, skipped)
    if skipped:
        log.info("fit: %d questions left out whose answers are all %s", state["labels"]["skipped_by_answer_type"], skipped)
    groups = apply_utility_scale(cfg, train_split, groups, spec.get("scorer") or {}, state["utility_table"])
    if cfg.loss.get("needs_gold"):  # hard-label losses learn nothing from questions without evidence
        groups = [g for g in groups if any(g.gold)]
    log.info("fit: %d training groups from %s", len(groups), table)
    if not groups:
        raise UAEError(
            f"fit: no training group is left: loss={cfg.loss.name} trains only on questions with a hard label, and "
            f"train.labels ({state['labels']['source']}, fraction {state['labels']['fraction']}) gives none."
        )
    val_split = load_split(cfg, cfg.data.eval_split, splits) if cfg.train.validate else None

    L.seed_everything(cfg.seed, workers=True)
    encoder = build(cfg.model.encoder, "model.encoder")
    loss = build(cfg.loss.fn, "loss.fn")
    datamodule = TrainingDataModule(
        groups,
        val_split,
        encoder.tokenize,
        batch_size=cfg.train.batch_size,
        passage_chunk=cfg.train.passage_chunk,
        val_batch_size=cfg.retrieval.batch_size,
        num_workers=cfg.train.num_workers,
        seed=cfg.seed,
    )
    module = RetrieverModule(
        encoder, loss, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, warmup_ratio=cfg.train.warmup_ratio, loss_name=cfg.loss.name,
        grad_cache=cfg.train.grad_cache, micro_batch=cfg.train.micro_batch or cfg.train.passage_chunk,
    )
    out_dir = Path(cfg.paths.output_dir)
    loggers = [build(node, f"logger.{name}") for name, node in (cfg.get("logger") or {}).items() if node]
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if not node or (name == "lr_monitor" and not loggers):  # the LR monitor needs a logger to write to
            continue
        if name == "step_checkpoint" and not cfg.train.checkpoint_every_steps:  # saved at epoch ends only
            continue
        if node.get("monitor") and val_split is None:  # nothing to monitor: keep the last checkpoint
            node = OmegaConf.merge(node, {"monitor": None, "filename": "epoch{epoch}-step{step}"})
        callbacks.append(build(node, f"callbacks.{name}"))
    clock = FitClock()  # not a config choice: results.json always says how long the fit took
    trainer = build(cfg.trainer, "trainer", callbacks=[*callbacks, clock], logger=loggers or False)
    exit_code = 0  # what W&B records for the run
    try:
        with warnings.catch_warnings():
            # Lightning looks for the epoch's position on the dataloader; ours is in TrainingDataModule.state_dict,
            # which resumes a checkpoint saved inside an epoch at the next batch, so its warning would be false.
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before", PossibleUserWarning)
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.train.ckpt_path)
    except SIGTERMException as stop:
        # Lightning ends the batch it is in and raises SystemExit() with no code, so a preempted run would exit 0
        # and a scheduler or make would take it for a finished one (Lightning-AI/pytorch-lightning#19916). 143 is
        # the shell's code for a process ended by SIGTERM.
        exit_code = 128 + signal.SIGTERM
        log.error("fit: stopped by SIGTERM at step %d; nothing exported. Its last checkpoint, if it saved one, "
                  "resumes it: the same command with train.ckpt_path=last", trainer.global_step)
        raise SystemExit(exit_code) from stop
    except BaseException:
        exit_code = 1
        raise
    finally:
        _finish_wandb(loggers, exit_code)
    state["is_global_zero"] = trainer.is_global_zero
    if not trainer.is_global_zero:  # DDP worker processes stop here; rank 0 exports and evaluates
        return
    checkpoint = _best_checkpoint(trainer)
    if checkpoint is not None:
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state_dict)
    encoder_dir = module.encoder.save(out_dir / "encoder")
    state["encoder_dir"] = encoder_dir
    state["checkpoint"] = str(checkpoint) if checkpoint else None
    # wall clock of trainer.fit, validation included, over every process of a resumed run (None: resumed from a
    # checkpoint older than the clock, so the total is unknown)
    state["train_seconds"] = clock.seconds()
    # The command that made the model, read now: Hydra rewrites .hydra/ at every start in this folder,
    # so a later evaluate or export would otherwise name itself. It goes into results.json.
    state["command"] = command_line(out_dir)
    # the card of a model not yet evaluated; the evaluate stage rewrites it with the run's results
    card = model_card(to_dict(cfg), state, module.encoder.layout(), [], command=state["command"])
    write_card(encoder_dir, card)
    log.info("fit: exported %s (from %s) to %s", cfg.loss.name, checkpoint or "the final weights", encoder_dir)


def _best_checkpoint(trainer: Any) -> Path | None:
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    best = callback.best_model_path or callback.last_model_path
    return Path(best) if best else None


def _finish_wandb(loggers: list[Any], exit_code: int = 0) -> None:
    """One W&B run per Hydra job: close it here, so the next job of a multirun starts its own; a fit that failed or
    was stopped is closed as failed (W&B would mark it finished)."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb  # deferred: only with the W&B logger

        wandb.finish(exit_code=exit_code)
