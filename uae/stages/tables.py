"""Which utility table a run's config asks for: the settings that fix its content, and where it is.

The utility stage (which writes tables) and the fit stage (which reads them) both need this, so it
lives apart from either: fit never calls into the utility stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from omegaconf import DictConfig, OmegaConf

from uae.core.build import build, to_dict
from uae.core.errors import UAEError
from uae.data.label_rules import answer_overlap_labels
from uae.data.records import Question, Split
from uae.retrieval.ann import IndexSpec
from uae.retrieval.base import Retriever, rank_questions
from uae.retrieval.bm25 import BM25Retriever
from uae.table.find import find_table

if TYPE_CHECKING:
    from uae.retrieval.dense import DenseRetriever


def utility_questions(split: Split) -> list[Question]:
    """Questions with a gold answer to score, whose document has passages to score it with."""
    return [q for q in split.questions if q.answerable and split.passages(q.document_id)]


# How deep a question without a document (open retrieval) is ranked for its hard negatives.
OPEN_DEPTH = 100


def document_rankings(
    split: Split, questions: list[Question], retrievers: dict[str, Retriever], depth: int = OPEN_DEPTH
) -> dict[str, list[list[str]]]:
    """Each retriever's ranking of each question's document (an open question's: the split's top ``depth``):
    what candidate sets and pseudo-labels draw from."""
    return {
        name: rank_questions(r, split, questions, scope="document", top_k=depth).ranked_ids
        for name, r in retrievers.items()
    }


def rank_range(cfg: DictConfig) -> tuple[int, int] | None:
    """``candidates.rank_range`` as ``(lo, hi)``: the ranks hard negatives are drawn from (None: the top)."""
    value = cfg.candidates.get("rank_range")
    if value is None:
        return None
    lo, hi = (int(v) for v in value)
    return lo, hi


def answer_overlap_leads(
    cfg: DictConfig, split: Split, questions: list[Question], rankings: dict[str, list[list[str]]]
) -> list[tuple[str, ...]]:
    """What each label-free set starts with under ``candidates.answer_overlap``: the paragraphs holding the
    answer, by the rule (and ``train.labels``' thresholds) that ``train.labels.source=answer_overlap``
    applies, so those labels find their positives scored. Ties go to the BM25 ranking, taken from
    ``rankings`` when the sets already drew on it."""
    bm25 = rankings.get("bm25") or document_rankings(split, questions, {"bm25": BM25Retriever()})["bm25"]
    labels = cfg.train.labels
    return answer_overlap_labels(
        split, questions, bm25, min_overlap=float(labels.min_overlap), max_positives=int(labels.max_positives)
    )


def hard_negative_retrievers(cfg: DictConfig) -> dict[str, Retriever]:
    """The retrievers whose top passages become hard negatives (BM25, the base encoder), per config."""
    n_hard = to_dict(cfg.candidates.hard_negatives)
    retrievers: dict[str, Retriever] = {}
    if n_hard.get("bm25", 0) > 0:
        retrievers["bm25"] = BM25Retriever()
    if n_hard.get("dense", 0) > 0:
        dense = build(cfg.candidates.base.retriever, "candidates.base.retriever")
        # Mined by exact search whatever retrieval.index says, from embeddings encoded in one piece whatever
        # retrieval.shard_size says (shards round a few ulp apart): the table's key names the encoder, not these.
        # candidates.shard_size mines from shards instead (a corpus whose encoding must survive a kill), and the
        # table's key says so.
        dense.index_spec = IndexSpec()
        dense.shard_size = cfg.candidates.get("shard_size")
        if not hasattr(dense, "encoder"):
            raise UAEError(
                "candidates.hard_negatives.dense > 0 needs a dense encoder as candidates.base (e.g. "
                "model@candidates.base=minilm), not BM25; or set candidates.hard_negatives.dense=0."
            )
        retrievers["dense"] = dense
    return retrievers


def utility_settings(cfg: DictConfig, scorer: Any, retrievers: dict[str, Retriever]) -> dict[str, Any]:
    """What fixes a table's content besides the data: the LLM scorer and how candidate sets are built."""
    candidates: dict[str, Any] = {
        "size": cfg.candidates.size,
        "hard_negatives": OmegaConf.to_container(cfg.candidates.hard_negatives, resolve=True),
        "seed": cfg.candidates.seed,
    }
    if not cfg.candidates.gold:  # only when off, so that the tables made before the switch keep their fingerprint
        candidates["gold"] = False
    if cfg.candidates.get("shard_size"):  # likewise only when set
        candidates["shard_size"] = int(cfg.candidates.shard_size)
    if cfg.candidates.get("rank_range") is not None:  # likewise only when set
        candidates["rank_range"] = list(rank_range(cfg) or ())
    if cfg.candidates.get("answer_overlap"):  # likewise only when on
        labels = cfg.train.labels
        candidates["answer_overlap"] = {"min_overlap": float(labels.min_overlap), "max_positives": int(labels.max_positives)}
    for name, retriever in retrievers.items():
        # the dense one has an encoder (hard_negative_retrievers checks)
        candidates[name] = cast("DenseRetriever", retriever).encoder.fingerprint_spec() if name == "dense" else retriever.describe()
    return {"scorer": scorer.fingerprint_spec(), "candidates": candidates}


def configured_table(
    cfg: DictConfig, split: Split, question_ids: list[str], settings: dict[str, Any], *, writing: bool
) -> Path | None:
    """:func:`uae.table.find.find_table` in ``utility.table_dir`` with this run's subset and overwrite."""
    return find_table(
        cfg.utility.table_dir,
        split,
        question_ids,
        settings,
        limit=split.max_documents,
        writing=writing,
        overwrite=bool(cfg.utility.overwrite),
    )


def train_table(cfg: DictConfig, split: Split, question_ids: list[str], state: dict[str, Any]) -> Path:
    """The utility table fit trains on: ``utility.table`` as given, the one the utility stage just
    checked, or one in ``utility.table_dir`` made with this config's LLM and candidate settings.

    ``utility.table`` is for a table made elsewhere (another LLM, another machine, a FlagEmbedding
    JSONL of any teacher's scores) where that teacher cannot be loaded to compare settings; its
    split, data and coverage are still checked when the groups are built, and its settings are logged.
    """
    if cfg.utility.get("table"):
        path = Path(cfg.utility.table)
        if not path.is_file():
            raise UAEError(f"utility.table={path}: no such file. Give a utility table (.parquet) or FlagEmbedding groups (.jsonl).")
        return path
    made = state.get("utility_tables", {}).get(split.name)
    if made is not None:
        return Path(made)
    scorer = build(cfg.llm.scorer, "llm.scorer")  # for its fingerprint only: loading SmolLM2 takes < 1 s
    settings = utility_settings(cfg, scorer, hard_negative_retrievers(cfg))
    del scorer
    found = configured_table(cfg, split, question_ids, settings, writing=False)
    if found is None:
        raise UAEError(
            f"No utility table in {cfg.utility.table_dir} covers the {len(question_ids)} answerable questions of "
            f"{split.dataset} {split.name} with these settings (llm={cfg.llm.name}, candidates, data file). Build it "
            "with the utility stage: add utility to stages (stages=[utility,fit,...]) or run `make utilities`."
        )
    return found
