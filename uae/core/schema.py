"""The config's typed schema: the type and range of every value UAE reads, checked before any stage runs.

Hydra composes the config and OmegaConf resolves it; neither knows that a temperature must be > 0 or
that ``abc`` is not a number, so a bad value would surface late (a traceback mid-run) or never (an
evaluate-only run writing a nonsensical loss into results.json). :func:`check` validates the composed
config against pydantic models in strict mode (no ``'3'`` for 3, no ``true`` for 1) whatever the stages,
and turns every violation into one line naming the key, what it must be and what it got::

    loss.sharpness must be a number > 0, got 'abc'

The sections UAE owns (retrieval, candidates, utility, train, evaluate) refuse unknown keys, which
catches a misspelt ``+train.lrr=...``; the groups whose options vary (data, model, llm, reader, loss)
are checked for the keys UAE reads and may carry more. trainer, logger and callbacks are Lightning's
arguments, which Lightning checks when it builds them.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Literal, Union

import annotated_types
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from uae.core.choices import ComputeType, Engine, Runtime
from uae.core.errors import UAEError
from uae.core.shard import Shard

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


class Group(BaseModel):
    """A config group's option (data=, model=, ...): the keys UAE reads are checked, others allowed."""

    model_config = ConfigDict(strict=True, extra="allow")


class Retrieval(Section):
    scope: Literal["document", "corpus"]
    top_k: PositiveInt
    batch_size: PositiveInt
    device: Device
    progress: bool


class HardNegatives(Section):
    bm25: Count = 0
    dense: Count = 0


class Candidates(Section):
    size: PositiveInt
    gold: bool = True
    answer_overlap: bool = False
    hard_negatives: HardNegatives
    seed: int
    base: dict[str, Any]


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
    fn: dict[str, Any]


class Data(Group):
    name: str
    dir: str = Field(description="a folder (data.dir=PATH)")
    train_split: str
    eval_split: str
    max_documents: PositiveInt | dict[str, PositiveInt] | None = Field(
        None, description="a positive integer, a per-split mapping such as {train: 89, dev: 28}, or null"
    )
    tables: str | None = None
    loader: dict[str, Any]

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        if value == "???":
            raise ValueError("data.dir is not set: give the folder that holds the data, data.dir=PATH.")
        return value


class Encoder(Group):
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
    retriever: dict[str, Any]


class Template(Group):
    style: Literal["chat", "plain"] = "chat"


class Scorer(Group):
    model_id: str
    max_length: PositiveInt = 1024
    batch_size: PositiveInt | Literal["auto"] = "auto"
    template: Template | None = None


class LLM(Group):
    name: str
    engine: Engine = "hf"
    compute_type: ComputeType = "auto"
    scorer: Scorer


class Answerer(Group):
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


class Config(Group):
    """The composed config, section by section (paths, trainer, logger, callbacks and hydra are not read here)."""

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


# Resolving these would need Hydra's runtime (paths.output_dir) or is Lightning's to check.
_NOT_CHECKED = ("paths", "trainer", "logger", "callbacks", "hydra")


def check(cfg: DictConfig) -> None:
    """Refuse the config unless every value has its type and range; one :class:`UAEError` lists them all."""
    sections: dict[str, Any] = {}
    for key in cfg:
        if key in _NOT_CHECKED:
            continue
        try:
            value = OmegaConf.select(cfg, str(key), throw_on_missing=False)
            sections[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except OmegaConfBaseException as exc:  # an interpolation that cannot be resolved (a missing env var, a typo)
            missing = re.search(r"Missing mandatory value: ([\w.]+)", str(exc))
            if missing:
                raise UAEError(f"{missing[1]} is not set (??? in the config): give it on the command line, {missing[1]}=...") from None
            raise UAEError(f"{key}: its value cannot be resolved ({type(exc).__name__}: {exc}).") from None
    if sections.get("reader") == {}:  # an empty group option (reader=none) composes to {}
        sections["reader"] = None
    try:
        Config.model_validate(sections)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_message(error, sections) for error in exc.errors()))
        if len(problems) == 1:
            raise UAEError(problems[0]) from None
        raise UAEError(f"{len(problems)} settings are invalid:\n  " + "\n  ".join(problems)) from None


def _message(error: Any, sections: dict[str, Any]) -> str:
    """``key must be <what the schema says>, got <value>``, or the validator's own sentence."""
    key, annotation, value = _locate(error["loc"], sections)
    if error["type"] == "missing":
        return f"{key} is missing: it must be {_describe(annotation)}."
    if error["type"] == "extra_forbidden":
        return f"{key} is not a setting UAE knows (a misspelt key?); remove it."
    if error["type"] == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{key} must be {_describe(annotation)}, got {value!r}"


def _locate(loc: tuple[Any, ...], sections: dict[str, Any]) -> tuple[str, Any, Any]:
    """The dotted key of an error, the annotation that governs it, and the value the config holds there.

    A union's members add their own names to ``loc`` (``constrained-int``, ``dict[str,...]``); the walk
    stops at the union, so that the message states the whole of what the key accepts, once.
    """
    annotation: Any = Config
    node: Any = sections
    parts: list[str] = []
    for part in loc:
        model = _model(annotation)
        bare = _strip(annotation)
        if model is not None and isinstance(part, str):
            field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
            annotation = Any if field is None else _with_metadata(field)
        elif typing.get_origin(bare) in (list, dict):
            args = typing.get_args(bare)
            annotation = args[-1] if args else Any
        else:
            break  # a union member's name, or deeper than the schema goes
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    return ".".join(parts), annotation, node


def _has(node: dict[str, Any] | list[Any], part: Any) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and 0 <= part < len(node)


def _with_metadata(field: Any) -> Any:
    annotation = field.annotation
    extras = list(field.metadata)
    if field.description:
        extras.append(_Said(field.description))
    return Annotated[(annotation, *extras)] if extras else annotation


class _Said:
    """A field's own description of what it accepts, used verbatim in messages."""

    def __init__(self, text: str) -> None:
        self.text = text


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip(args[0])
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    bare = _strip(annotation)
    return bare if isinstance(bare, type) and issubclass(bare, BaseModel) else None


def _describe(annotation: Any) -> str:
    """What a value of ``annotation`` must be, in words: 'a number > 0', 'an integer >= 1 or null'."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        said = [m.text for m in metadata if isinstance(m, _Said)]
        if said:
            return said[0]
        bounds = [b for m in metadata for b in (getattr(m, "metadata", None) or [m])]
        return _describe(base) + _bounds(bounds)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        words = [_describe(a) for a in args if a is not type(None)]
        text = " or ".join(words)
        return text + " or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping of settings"
    return "a valid value"


def _bounds(metadata: list[Any]) -> str:
    low = next((m for m in metadata if isinstance(m, (annotated_types.Gt, annotated_types.Ge))), None)
    high = next((m for m in metadata if isinstance(m, (annotated_types.Lt, annotated_types.Le))), None)
    if low is not None and high is not None:
        left = "[" if isinstance(low, annotated_types.Ge) else "("
        right = "]" if isinstance(high, annotated_types.Le) else ")"
        return f" in {left}{_num(low)}, {_num(high)}{right}"
    if low is not None:
        return (" > " if isinstance(low, annotated_types.Gt) else " >= ") + str(_num(low))
    if high is not None:
        return (" < " if isinstance(high, annotated_types.Lt) else " <= ") + str(_num(high))
    return ""


def _num(bound: Any) -> Any:
    for name in ("gt", "ge", "lt", "le"):
        if hasattr(bound, name):
            return getattr(bound, name)
    return bound
