"""No setting is silently ignored: every key a run is given must be one that UAE reads.

A key nobody reads is worse than a bad value: ``+data.max_papers=3`` composes, the run starts, and it goes
over all of dev, because the setting is ``data.max_documents``. Hydra refuses a new key without ``+``
("Key 'max_papers' is not in struct ... use +data.max_papers=3", which then passes), and accepts any key with it.
So the keys are checked against the schema (:mod:`uae.core.schema`) twice, both times before torch loads:

- :func:`override_problem`, on the command line before Hydra composes, so that both forms get the same answer
  (with the closest known keys, or the new name of a renamed one) instead of Hydra's advice to add a ``+``;
- :func:`call_problems`, on the composed config, for the mappings Hydra instantiates (``_target_``): their keys
  are the arguments of the function or class they name, read from its source with :mod:`ast` (importing it
  would load torch), so a new argument needs no schema change.

Hydra's own keys, config group choices (``model=bm25``, ``model@candidates.base=...``) and Lightning's
arguments (``trainer``, ``logger``, ``callbacks``: Lightning checks them when it builds them) are left as they are.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel

from uae.core.config import ROOT_DIR

# Keys that were renamed: the old dotted key -> the new one, so that an old command gets the new name.
RENAMED = {"data.max_papers": "data.max_documents"}
# Hydra's instantiate keys, allowed in any mapping that has a _target_.
HYDRA_CALL_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})
NOT_OURS = ("hydra", "trainer", "logger", "callbacks")
# Config groups: NAME=OPTION chooses a file of conf/NAME/, which Hydra checks.
GROUPS = frozenset(p.name for p in (ROOT_DIR / "conf").iterdir() if p.is_dir())


def known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key the schema names, sections and leaves, in schema order (the candidates of a suggestion)."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        keys.append(key)
        sub = model_of(field.annotation)
        if sub is not None:
            keys += known_keys(sub, key + ".")
    return keys


def unknown_key(key: str, model: type[BaseModel]) -> tuple[str | None, str | None]:
    """``(unknown, call)``: the first part of ``key`` that the schema does not know (``data.max_papers`` of
    ``data.max_papers.dev``), and the mapping Hydra instantiates that ``key`` would be an argument of, which only
    its ``_target_`` can tell (``model.encoder`` of ``model.encoder.poolin``). Both None when the schema knows
    the key or leaves what lies below to someone else (a mapping of any keys, such as ``data.max_documents.test``)."""
    if key.split(".", 1)[0] in NOT_OURS:
        return None, None
    node: type[BaseModel] | None = model
    parts = key.split(".")
    for i, part in enumerate(parts):
        if node is None:  # below a value or a free mapping: not the schema's to say
            return None, None
        fields = {f.alias or n: f for n, f in node.model_fields.items()}
        if part not in fields:
            if node.model_config.get("extra") == "allow":
                return None, ".".join(parts[:i]) if i == len(parts) - 1 else None
            return ".".join(parts[: i + 1]), None
        node = model_of(fields[part].annotation)
    return None, None


def unknown_message(key: str, model: type[BaseModel]) -> str:
    """``KEY is not a setting UAE knows``, with the new name of a renamed key or the closest known keys."""
    if key in RENAMED:
        return f"{key} was renamed {RENAMED[key]}: give {RENAMED[key]} instead."
    known = known_keys(model)
    parent = key.rpartition(".")[0]
    siblings = [k for k in known if k.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(key, siblings, n=3, cutoff=0.6) or difflib.get_close_matches(key, known, n=3, cutoff=0.75)
    if close:
        return f"{key} is not a setting UAE knows: did you mean {' or '.join(close)}?"
    listed = ", ".join(k.rpartition(".")[2] for k in siblings)
    return f"{key} is not a setting UAE knows; the keys of {parent or 'the config'} are {listed}."


def override_problem(argv: list[str], model: type[BaseModel]) -> str | None:
    """Our message for the first command-line override whose key the schema does not know, or None.

    Checked before Hydra composes, so ``data.max_papers=3`` (which Hydra would refuse, advising a ``+``) and
    ``+data.max_papers=3`` (which Hydra would accept, and nothing would read) get the same answer.
    """
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "hydra.", "+hydra.", "~hydra."))]
    calls = []
    for arg in overrides:
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if "@" in key or "/" in key or key in GROUPS:
            continue  # a config group choice (model=bm25, +experiment=..., model@candidates.base=..., hydra/launcher=joblib): Hydra's
        bad, call = unknown_key(key, model)
        if bad in RENAMED and bad == key:
            return f"{arg}: {bad} was renamed {RENAMED[bad]}: give {RENAMED[bad]}={value} instead."
        if bad is not None:
            added = " A + adds the key to the config, and nothing would read it." if arg.startswith("+") else ""
            return f"{arg}: {unknown_message(bad, model)}{added}"
        if call is not None:
            calls.append((arg, call, key.rpartition(".")[2]))
    return _call_override_problem(overrides, calls) if calls else None


def _call_override_problem(overrides: list[str], calls: list[tuple[str, str, str]]) -> str | None:
    """An argument override (``model.encoder.poolin=cls``) checked against the ``_target_`` the config puts there,
    which takes one composition without those overrides (Hydra would refuse the new keys first)."""
    from omegaconf import OmegaConf

    from uae.core.config import compose
    from uae.core.errors import UAEError

    try:
        cfg = compose([o for o in overrides if o not in {arg for arg, _, _ in calls}])
    except UAEError:
        return None  # another problem: Hydra says it in its own words
    for arg, path, name in calls:
        target = OmegaConf.select(cfg, f"{path}._target_", default=None)
        takes = parameters(target) if isinstance(target, str) and target.startswith("uae.") else None
        if takes is not None and name not in takes | HYDRA_CALL_KEYS:
            return f"{arg}: {_argument_message(f'{path}.', name, target, takes)}"
    return None


def call_problems(sections: Any, path: str = "") -> list[str]:
    """One line per key of an instantiated UAE mapping that is not an argument of what it names."""
    problems = []
    if isinstance(sections, dict):
        target = sections.get("_target_")
        if isinstance(target, str) and target.startswith("uae."):
            takes = parameters(target)
            if takes is not None:
                for key in sections:
                    if key not in takes | HYDRA_CALL_KEYS:
                        problems.append(_argument_message(path, str(key), target, takes))
        for key, value in sections.items():
            problems += call_problems(value, f"{path}{key}.")
    elif isinstance(sections, list):
        for i, value in enumerate(sections):
            problems += call_problems(value, f"{path[:-1]}[{i}].")
    return problems


# The loss group's own keys that are not knobs of its objective.
LOSS_META = frozenset({"name", "fn", "needs_gold"})


def unread_loss_problems(loss: Any) -> list[str]:
    """One line per knob of the loss group (``loss.mix``, ...) that its ``fn`` never reads through ``${loss.KEY}``.

    The schema knows every loss's knobs (one ``loss`` section for all), so ``loss.mix=0.5`` with ``loss=infonce``,
    set by an experiment file or left over from a sweep, is a known key with a valid value that nothing reads.
    ``loss`` is the group's mapping unresolved, where the interpolations are still visible."""
    if not isinstance(loss, dict) or not isinstance(loss.get("fn"), dict):
        return []
    read = {key for value in loss["fn"].values() if isinstance(value, str) for key in _LOSS_REFERENCE.findall(value)}
    target = loss["fn"].get("_target_", "its fn")
    return [
        f"loss.{key}={loss[key]!r} does nothing with loss={loss.get('name')}: {target} never reads it (its fn takes "
        f"{', '.join(sorted(read)) or 'no knob'}). Drop it, or choose a loss that uses it (conf/loss/)."
        for key in loss if key not in LOSS_META and key not in read
    ]


_LOSS_REFERENCE = re.compile(r"\$\{loss\.(\w+)\}")


def _argument_message(path: str, key: str, target: str, takes: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(takes), n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(path + c for c in close)}?" if close else f"it takes {', '.join(sorted(takes))}."
    return f"{path}{key} is not a setting UAE knows: {target} has no argument {key!r}; {hint}"


@functools.cache  # a config names the same few targets several times (model and candidates.base)
def parameters(target: str) -> frozenset[str] | None:
    """The argument names of ``module.function`` or ``module.Class`` (its ``__init__``), read from the source,
    or None when they cannot be told (a ``**kwargs``, a class without its own ``__init__``, no source)."""
    module, _, name = target.rpartition(".")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name), None)
    if isinstance(found, ast.ClassDef):
        found = next((n for n in found.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if not isinstance(found, ast.FunctionDef) or found.args.kwarg is not None:
        return None
    args = found.args
    return frozenset(a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)) - {"self"}


def bare(annotation: Any) -> Any:
    """An annotation without its constraints and its ``| None`` (``Annotated[int, ...] | None`` -> int)."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return bare(members[0])
    return annotation


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model an annotation holds (``Reader | None`` -> Reader), else None."""
    found = bare(annotation)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None
