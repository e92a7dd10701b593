"""Model and dataset cards (huggingface_hub's ModelCard and DatasetCard) made from a run's own records.

A card says what a model is without the run folder beside it: the base model and the settings that
decide its embeddings, the data and scale it was trained on, the teacher LLM and the fingerprint of
the utility table it learned from, the loss and its hyper-parameters, the run's evaluation table with
its zero-shot row, and the command that made it. The metadata is what the hub indexes (base model,
datasets, library, tags, metrics as model-index), built with huggingface_hub's classes so that it
parses as the hub parses it.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uae.retrieval.st_layout import EncoderLayout
from uae.storage.fingerprint import fingerprint

# Hub ids of the datasets UAE has loaders for; a BEIR folder is the user's own data and has none.
HUB_DATASETS = {"qasper": "allenai/qasper", "squad": "rajpurkar/squad"}
DATASET_NAMES = {"qasper": "QASPER", "squad": "SQuAD v1.1", "beir": "BEIR-format data"}
METRIC_NAMES = {
    "hit@1": "Hit@1", "recall@1": "Recall@1", "recall@5": "Recall@5", "map": "MAP", "mrr": "MRR",
    "ndcg@10": "nDCG@10", "token_f1": "Answer token F1",
}
TASK: dict[str, Any] = {"task_type": "information-retrieval", "task_name": "Information Retrieval"}  # as sentence-transformers' IR cards
log = logging.getLogger(__name__)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")

MODEL_BODY = """\
# {name}

A dense retriever fine-tuned from {base} with UAE (Utility-Aligned Embeddings): it learned to rank
passages the way an LLM uses them, from each candidate passage's utility, u(p) = mean over answers of
[log p(answer | passage, question) - log p(answer | question)], as a teacher LLM measured it.

## Usage

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{where}")
queries = model.encode_query(["What dataset do they evaluate on?"])
passages = model.encode_document(["We evaluate on QASPER.", "Table 2 lists the baselines."])
print(model.similarity(queries, passages))
```

or with UAE: `from uae import Retriever; Retriever.load("{where}").rank(question, passages, k=5)`.

## Model

- base model: {base}
- pooling: {pooling}; normalised: {normalize} (similarity: {similarity})
- query instruction (prompt `query`): {query_instruction}; passage instruction (prompt `document`): {passage_instruction}
- max length: {query_max_length} tokens per query, {passage_max_length} per passage
- towers: {towers}

## Training

- data: {data_scope} {dataset} split `{train_split}`{groups_text}, {candidates} candidate passages each{negatives}
- teacher LLM: `{scorer}`; utility table `{table_file}`, spec fingerprint `{table_spec}`
- hard labels: {label_source} (fraction {label_fraction})
- loss: `{loss}`{loss_hyper}
- optimisation: {batch_size} questions per batch, lr {lr}, weight decay {weight_decay}, warm-up ratio {warmup}, \
{epochs} epoch(s), seed {seed}{train_time}
- checkpoint: {checkpoint}

## Evaluation

{evaluation}

## Reproduce

```bash
{command}
```

## Intended use and limits

- Intended for ranking passages of documents like those of {dataset} for questions, e.g. the retrieval step of a
  RAG pipeline (LangChain, LlamaIndex and Haystack load sentence-transformers models).
- The utilities are what one LLM (the teacher above) found useful; another reader LLM may prefer other passages.
- Trained on one dataset{groups_short}: expect lower quality out of its domain, and check it on your own data first.
- Text beyond {passage_max_length} tokens is truncated; scores are similarities, not calibrated probabilities.
"""

DATASET_BODY = """\
# UAE utility table: {split}

{n_rows} rows: {n_questions} questions x their candidate passages, each with the utility that a teacher LLM
(`{scorer}`) measured, u(p) = mean over answers of [log p(answer | passage, question) - log p(answer | question)],
in nats per answer token. UAE trains dense retrievers on it.

```python
from datasets import load_dataset

table = load_dataset("parquet", data_files="{file}", split="train")  # in this folder
# once on the hub: load_dataset("OWNER/NAME", split="{split}")
```

## Columns

| column | meaning |
|---|---|
| question_id, document_id, passage_id | ids in the source data (the split below) |
| position | the candidate's index within its question's set |
| source | how the candidate was chosen: gold, bm25, dense, random |
| is_gold | whether the passage is annotated evidence |
| utility | ll_context - ll_closed |
| ll_context, ll_closed | mean log-likelihood per answer token with the passage, and with none |
| n_answers | the answers averaged over |

## How it was made

- split `{spec_split}`, data fingerprint `{data}`
- teacher: `{scorer}`, weights sha256 `{weights}`
- candidates: {candidate_settings}
- spec fingerprint `{spec_fingerprint}` (a model card's "utility table ... spec fingerprint" names the table it learned
  from; the parquet metadata holds the full spec under `uae_spec`)

The passages' and questions' texts are not included: join on the ids with the source data.
"""


def hub_model_id(model_id: str | None) -> str | None:
    """``model_id`` when it names a hub repository (owner/name), not a local folder."""
    if not model_id or not _HUB_ID.fullmatch(model_id) or Path(model_id).exists():
        return None
    return model_id


def command_line(run_dir: Path) -> str | None:
    """The command that made a run, from the overrides Hydra recorded in its folder."""
    import yaml  # deferred: start-up speed

    try:
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError):
        return None
    return "python -m uae.run " + " ".join(shlex.quote(str(o)) for o in overrides)


def model_card(
    config: Mapping[str, Any],
    record: Mapping[str, Any],
    layout: EncoderLayout,
    rows: Sequence[Mapping[str, Any]],
    *,
    table: str = "",
    command: str | None = None,
    repo_id: str | None = None,
) -> Any:
    """The card (a huggingface_hub ModelCard) of a fine-tuned encoder.

    ``config`` is the run's resolved config, ``record`` what results.json records about training
    (utility_table, labels, train_seconds), ``rows`` the evaluation rows (zero-shot first, fine-tuned
    last, as uae.results.read.load_results makes them) and ``table`` their markdown table; no rows
    before the run is evaluated.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData  # deferred: start-up speed

    model, data, loss = (dict(config.get(k) or {}) for k in ("model", "data", "loss"))
    base = hub_model_id((model.get("encoder") or {}).get("model_id"))
    name = trained_name(str(model.get("name", "encoder")), str(loss.get("name", "uae")))
    data_name = str(data.get("name", "data"))
    dataset_id = HUB_DATASETS.get(data_name)
    tuned = rows[-1] if rows else None
    results = []
    if tuned is not None:
        dataset: dict[str, Any] = {
            "dataset_type": dataset_id or data_name,
            "dataset_name": f"{DATASET_NAMES.get(data_name, data_name)} ({tuned['split']})",
            "dataset_split": str(tuned["split"]),
        }
        for metric, pretty in METRIC_NAMES.items():
            value = tuned.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                results.append(EvalResult(**TASK, **dataset, metric_type=metric, metric_name=pretty, metric_value=round(float(value), 6)))
    metadata = ModelCardData(
        base_model=base,
        datasets=[dataset_id] if dataset_id else None,
        language="en" if dataset_id else None,
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=[
            "sentence-transformers", "sentence-similarity", "feature-extraction", "dense-retrieval", "uae",
            "utility-aligned-embeddings", f"loss-{loss.get('name', 'uae')}",
        ],
        model_name=name,
        eval_results=results or None,
    )
    body = MODEL_BODY.format(**_model_facts(config, record, layout, tuned, table, command, repo_id, name, base))
    return ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}")


def trained_name(base_name: str, loss_name: str) -> str:
    """A fine-tuned retriever's name (``minilm+uae``): in results.json, the card's model-index, the compare headers."""
    return f"{base_name}+{loss_name}"


def exported_name(folder: str | Path | None, base_name: str) -> str | None:
    """The retriever name a UAE export was trained under (``minilm+uae``), read from its card, so that an
    evaluate-only run of that folder is not named after its base model. None for any other folder.

    A card written before evaluation has no model-index name: the ``loss-*`` tag and ``base_name`` make it.
    """
    readme = Path(folder) / "README.md" if folder else None
    if readme is None or not readme.is_file():
        return None
    import yaml
    from huggingface_hub import ModelCard  # deferred: start-up speed

    try:
        data = ModelCard.load(readme, ignore_metadata_errors=True).data
    except (ValueError, yaml.YAMLError) as error:  # a stranger's card that does not parse is not a UAE card
        log.warning("%s: its metadata does not parse (%s); the run is named after model.name", readme, error)
        return None
    tags = list(data.tags or [])
    if "uae" not in tags:
        return None
    if data.model_name:
        return str(data.model_name)
    losses = [t.removeprefix("loss-") for t in tags if t.startswith("loss-")]
    return trained_name(base_name, losses[0]) if losses else None


def _model_facts(
    config: Mapping[str, Any], record: Mapping[str, Any], layout: EncoderLayout, tuned: Mapping[str, Any] | None,
    table: str, command: str | None, repo_id: str | None, name: str, base: str | None,
) -> dict[str, Any]:
    model, data, loss, train, trainer, candidates = (
        dict(config.get(k) or {}) for k in ("model", "data", "loss", "train", "trainer", "candidates")
    )
    utility, labels = dict(record.get("utility_table") or {}), dict(record.get("labels") or {})
    data_name = str(data.get("name", "data"))
    dataset = DATASET_NAMES.get(data_name, data_name)
    max_documents = data.get("max_documents")
    if isinstance(max_documents, Mapping):
        max_documents = max_documents.get(data.get("train_split"))
    groups = labels.get("groups")
    seconds = record.get("train_seconds")
    hyper = ", ".join(f"{k}={loss[k]}" for k in ("temperature", "sharpness", "mix") if k in loss)
    if tuned is None:
        evaluation = "Not evaluated in this run (it had no evaluate stage)."
    else:
        scope = "its own document" if (config.get("retrieval") or {}).get("scope") == "document" else "the whole split"
        evaluation = (
            f"{dataset} split `{tuned['split']}`, {tuned['n_questions']} questions, each ranking {scope}. The row of the "
            f"base model ({model.get('name', 'zero-shot')}) is its zero-shot evaluation in the same run.\n\n{table.strip()}"
        )
    encoder_model_id = (model.get("encoder") or {}).get("model_id", "?")
    return {
        "name": name,
        "base": f"[`{base}`](https://huggingface.co/{base})" if base else f"`{encoder_model_id}`",
        "where": repo_id or "path/to/encoder",
        "pooling": layout.pooling,
        "normalize": layout.normalize,
        "similarity": "cosine" if layout.normalize else "dot product",
        "query_instruction": repr(layout.query_instruction),
        "passage_instruction": repr(layout.passage_instruction),
        "query_max_length": layout.query_max_length,
        "passage_max_length": layout.passage_max_length,
        "towers": "one encoder for queries and passages" if layout.shared else
        "separate query and passage encoders (a sentence-transformers Router: use encode_query and encode_document)",
        "data_scope": f"the first {max_documents} documents of" if max_documents else "all of",
        "dataset": dataset,
        "train_split": data.get("train_split", "?"),
        "groups_text": f", {groups} training questions" if groups is not None else "",
        "groups_short": f" ({groups} questions)" if groups is not None else "",
        "candidates": candidates.get("size", "?"),
        "negatives": f" (hard negatives: {dict(candidates['hard_negatives'])})" if candidates.get("hard_negatives") else "",
        "scorer": utility.get("scorer") or "?",
        "table_file": Path(str(utility.get("path") or "?")).name,
        "table_spec": utility.get("spec") or "?",
        "label_source": labels.get("source", "evidence"),
        "label_fraction": labels.get("fraction", 1.0),
        "loss": loss.get("name", "?"),
        "loss_hyper": f" ({hyper})" if hyper else "",
        "batch_size": train.get("batch_size", "?"),
        "lr": train.get("lr", "?"),
        "weight_decay": train.get("weight_decay", "?"),
        "warmup": train.get("warmup_ratio", "?"),
        "epochs": trainer.get("max_epochs", "?"),
        "seed": config.get("seed", "?"),
        "train_time": _duration(seconds),
        "checkpoint": "the best by MAP on the evaluation split, checked after each epoch" if train.get("validate")
        else "the last one",
        "evaluation": evaluation,
        "command": command or "(the command was not recorded)",
    }


def dataset_card(spec: Mapping[str, Any], *, n_rows: int, n_questions: int, file: str, split: str) -> Any:
    """The card (a huggingface_hub DatasetCard) of a utility table published as a dataset."""
    from huggingface_hub import DatasetCard, DatasetCardData  # deferred: start-up speed

    scorer = dict(spec.get("scorer") or {})
    metadata = DatasetCardData(
        pretty_name=f"UAE utility table ({split})",
        task_categories=["text-retrieval"],
        tags=["uae", "utility-aligned-embeddings", "llm-utility", "distillation"],
        size_categories=[_size_category(n_rows)],
        configs=[{"config_name": "default", "data_files": [{"split": split, "path": file}]}],
    )
    body = DATASET_BODY.format(
        split=split, n_rows=n_rows, n_questions=n_questions, file=file, scorer=scorer.get("model_id", "?"),
        spec_split=spec.get("split", "?"), data=spec.get("data", "?"), weights=scorer.get("weights", "?"),
        candidate_settings={k: v for k, v in dict(spec.get("candidates") or {}).items() if k in ("size", "hard_negatives", "seed", "gold")},
        spec_fingerprint=fingerprint(dict(spec)),
    )
    return DatasetCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    return f"; {seconds:.0f} s of training" if seconds < 120 else f"; {seconds / 60:.1f} minutes of training"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"
