"""The config's typed schema: the type and range of every value UAE reads, checked before any stage runs.

Hydra composes the config and OmegaConf resolves it; neither knows that a temperature must be > 0 or
that ``abc`` is not a number, so a bad value would surface late (a traceback mid-run) or never (an
evaluate-only run writing a nonsensical loss into results.json). :func:`check` validates the composed
config against pydantic models in strict mode (no ``'3'`` for 3, no ``true`` for 1) whatever the stages,
and turns every violation into one line naming the key, what it must be and what it got::

    loss.sharpness must be a number > 0, got 'abc'

Every key is one the schema names (:mod:`uae.core.keys` says which, with the closest known keys), so a
misspelt ``+train.lrr=...`` is refused, never ignored; the mappings Hydra instantiates (``_target_``) take
the arguments of what they name. trainer, logger and callbacks are Lightning's arguments, which Lightning
checks when it builds them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from uae.core.choices import ComputeType, Engine, ReaderEngine, Runtime
from uae.core.errors import UAEError
from uae.core.keys import call_problems, unread_loss_problems
from uae.core.shard import Shard
from uae.core.violations import message

PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Stage = Literal["utility", "fit", "evaluate", "report"]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda, cuda:N or mps")]


class Section(BaseModel):
    """A part of the config UAE owns: every key known, every value of its exact type."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Group(Section):
    """A config group's option (data=, model=, ...): the keys of every option, each checked where UAE reads it."""


class Call(BaseModel):
    """A mapping Hydra instantiates: the typed fields are checked here, every key against the arguments of
    its ``_target_`` (:func:`uae.core.keys.call_problems`)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)
    target_: str = Field(alias="_target_")


class Retrieval(Section):
    scope: Literal["document", "corpus"]
    top_k: PositiveInt
    batch_size: PositiveInt
    device: Device
    progress: bool
    index: str = "Flat"
    ef_search: PositiveInt | None = None
    nprobe: PositiveInt | None = None
    exact_rerank: Count = 0
    shard_size: PositiveInt | None = None


class Utility(Section):
    splits: list[str]
    shard: str | None = Field(None, description="i/n with 0 <= i < n (e.g. 0/4), or null")
    chunk_questions: PositiveInt
    work_dir: str
    table_dir: str
    overwrite: bool
    report: bool
    table: str | None = None

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        try:
            Shard.parse(value)
        except UAEError as exc:
            raise ValueError(str(exc)) from None
        return value


class Labels(Section):
    source: Literal["evidence", "answer_overlap", "teacher_argmax", "none"] = "evidence"
    fraction: Fraction = 1.0
    seed: int = 0
    table: str | None = None
    min_overlap: Fraction = 0.5
    max_positives: PositiveInt = 1


class Train(Section):
    batch_size: PositiveInt
    passage_chunk: PositiveInt
    lr: Positive
    weight_decay: NonNegative
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)]
    num_workers: Count
    validate_: bool = Field(alias="validate")
    labels: Labels = Labels()
    skip_answer_types: list[Literal["extractive", "abstractive", "boolean", "none"]] = []
    utility_scale: Literal["per_token", "summed"] = "per_token"
    ckpt_path: str | None = None
    checkpoint_every_steps: PositiveInt | None = None
    grad_cache: bool = False
    micro_batch: PositiveInt | None = None


class Evaluate(Section):
    zero_shot: bool


class Loss(Group):
    name: str
    temperature: Positive = None  # type: ignore[assignment]  # absent for some losses; never null when given
    sharpness: Positive = None  # type: ignore[assignment]
    mix: Fraction = None  # type: ignore[assignment]
    min_confidence: Fraction = 0.0
    confidence_weight: bool = False
    denoise_margin: NonNegative | None = None
    needs_gold: bool = False
    fn: Call


class Data(Group):
    name: str
    dir: str = Field(description="a folder (data.dir=PATH)")
    train_split: str
    eval_split: str
    max_documents: PositiveInt | dict[str, PositiveInt] | None = Field(
        None, description="a positive integer, a per-split mapping such as {train: 89, dev: 28}, or null"
    )
    tables: str | None = None
    loader: Call

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        if value == "???":
            raise ValueError("data.dir is not set: give the folder that holds the data, data.dir=PATH.")
        return value


class Encoder(Call):
    model_id: str
    local_path: str | None = None
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    query_max_length: PositiveInt = 512
    passage_max_length: PositiveInt = 512
    shared: bool = True
    gradient_checkpointing: bool = False
    runtime: Runtime = "torch"


class Model(Group):
    name: str
    encoder: Encoder | None = None
    retriever: Call


class HardNegatives(Section):
    bm25: Count = 0
    dense: Count = 0


class Candidates(Section):
    size: PositiveInt
    gold: bool = True
    answer_overlap: bool = False
    hard_negatives: HardNegatives
    rank_range: list[Count] | None = Field(None, description="two ranks [lo, hi] with 0 <= lo < hi, or null")
    shard_size: PositiveInt | None = None

    @field_validator("rank_range")
    @classmethod
    def _rank_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) != 2 or value[0] >= value[1]):
            raise ValueError(f"candidates.rank_range must be two ranks [lo, hi] with 0 <= lo < hi, got {value}")
        return value
    seed: int
    base: Model


class Template(Section):
    style: Literal["chat", "plain"] = "chat"
    system: str | None = None
    context_prompt: str
    closed_book_prompt: str
    answer_prefix: str = ""
    target_prefix: str = ""


class Scorer(Call):
    model_id: str
    max_length: PositiveInt = 1024
    batch_size: PositiveInt | Literal["auto"] = "auto"
    template: Template | None = None


class ReaderModel(Section):
    model_id: str
    local_path: str | None = None


class LLM(Group):
    name: str
    engine: Engine = "hf"
    compute_type: ComputeType = "auto"
    scorer: Scorer
    reader_model: ReaderModel | None = None  # another model answers than scores (the reader follows llm.scorer otherwise)


class Answerer(Call):
    engine: ReaderEngine = "hf"
    k: PositiveInt = 1
    max_new_tokens: PositiveInt = 32
    max_length: PositiveInt = 1024
    batch_size: PositiveInt = 8
    template: Template | None = None


class Reader(Group):
    name: str
    answerer: Answerer


class Rerank(Group):
    name: str
    k: PositiveInt
    prompt: str


class Paths(Section):
    """Where things are; checked for its keys only (output_dir is Hydra's at run time)."""

    root_dir: str
    data_dir: str
    cache_dir: str
    log_dir: str
    output_dir: str


class Config(Section):
    """The composed config, section by section (trainer, logger and callbacks are Lightning's, hydra Hydra's)."""

    experiment: str
    stages: list[Stage] = Field(description="a list of stages from utility, fit, evaluate, report")
    seed: int
    skip_done: bool = False
    retrieval: Retrieval
    candidates: Candidates
    utility: Utility
    train: Train
    evaluate: Evaluate
    loss: Loss
    data: Data
    model: Model
    llm: LLM
    reader: Reader | None = None
    rerank: Rerank | None = None
    paths: Paths | None = None
    trainer: dict[str, Any] | None = None
    logger: dict[str, Any] | None = None
    callbacks: dict[str, Any] | None = None


# Lightning's to check, and Hydra's; paths is checked for its keys unresolved (output_dir needs Hydra's runtime).
_NOT_CHECKED = ("trainer", "logger", "callbacks", "hydra")


def check(cfg: DictConfig) -> None:
    """Refuse the config unless every value has its type and range; one :class:`UAEError` lists them all."""
    sections: dict[str, Any] = {}
    for node in cfg:
        key = str(node)
        if key in _NOT_CHECKED:
            continue
        if key == "paths":
            sections[key] = OmegaConf.to_container(cfg.paths, resolve=False)
            continue
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
            sections[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except OmegaConfBaseException as exc:  # an interpolation that cannot be resolved (a missing env var, a typo)
            missing = re.search(r"Missing mandatory value: ([\w.]+)", str(exc))
            if missing:
                raise UAEError(f"{missing[1]} is not set (??? in the config): give it on the command line, {missing[1]}=...") from None
            raise UAEError(f"{key}: its value cannot be resolved ({type(exc).__name__}: {exc}).") from None
    if sections.get("reader") == {}:  # an empty group option (reader=none) composes to {}
        sections["reader"] = None
    problems = call_problems(sections)
    if "loss" in cfg:
        problems += unread_loss_problems(OmegaConf.to_container(cfg.loss, resolve=False))
    try:
        Config.model_validate(sections)
    except ValidationError as exc:
        problems = list(dict.fromkeys([message(error, sections, Config) for error in exc.errors()] + problems))
    if problems:
        if len(problems) == 1:
            raise UAEError(problems[0]) from None
        raise UAEError(f"{len(problems)} settings are invalid:\n  " + "\n  ".join(problems)) from None
