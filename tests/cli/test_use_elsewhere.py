"""A trained run in users' hands: the exported encoder in sentence-transformers, the ``uae.Retriever`` API,
``python -m uae.export`` and ``python -m uae.search``, and their bad input.

Every check reads the session's one tiny trained run (tests/conftest.py trained_run: tiny BERT with CLS
pooling, a query instruction and separate query and passage towers, tiny LLM, the two-paper fixture)
and compares against what that run itself wrote (rankings.json, results.json), never against numbers
tuned into the test. Shared towers, the usual case, are exported by the same code
(tests/retrieval/test_st_layout.py). The commands' logic runs in this process (their ``main``, which
answers bad input with 2 and one ``error:`` paragraph as the process does); processes are started
where the process is the point: a cheap import, the environment of a push, the blocks of docs/models.md.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import ROOT
from tests.helpers.runs import assert_cli_error, assert_main_error, cli
from uae.core.errors import UAEError

TIE = 1e-6  # scores closer than this may come in either order (rounding differs with the batch)


@pytest.fixture(scope="module")
def trained(trained_run: Path) -> Path:
    """The folder of a run that trained (utility, fit) and evaluated (fine-tuned and zero-shot) an encoder."""
    return trained_run


@pytest.fixture(scope="module")
def split(tiny_raw_dir: Path):
    from uae.data.qasper import load_qasper

    return load_qasper("dev", tiny_raw_dir, allow_hub=False)


def export(*args: str, capsys) -> tuple[int, object]:
    """``python -m uae.export args``, in this process: its exit status and what it printed."""
    from uae.export import main

    capsys.readouterr()  # what the test printed before is not the command's
    code = main(list(args))
    return code, capsys.readouterr()


def search(*args: str, capsys) -> tuple[int, object]:
    """``python -m uae.search args``, in this process."""
    from uae.search import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr()


def _assert_ranked_as(ranking: list[str], scores: dict[str, float]) -> None:
    """``ranking`` (the run's) orders the passages by ``scores`` (another implementation's), up to near ties."""
    assert sorted(ranking) == sorted(scores)
    ordered = [scores[pid] for pid in ranking]
    assert all(a >= b - TIE for a, b in itertools.pairwise(ordered)), list(zip(ranking, ordered))


def test_sentence_transformers_ranks_as_the_run_did(trained: Path, split) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(trained / "encoder"), device="cpu")
    assert model.prompts["query"] == "search: "
    assert type(model[0]).__name__ == "Router"  # the separate towers, as sentence-transformers holds two
    rankings = json.loads((trained / "rankings.json").read_text())
    assert set(rankings) == {q.question_id for q in split.evaluable_questions}
    for question in split.evaluable_questions:
        passages = split.passages(question.document_id)
        q = model.encode_query(question.text, convert_to_tensor=True)
        p = model.encode_document([x.text for x in passages], convert_to_tensor=True)
        scores = (p @ q).tolist()
        _assert_ranked_as(rankings[question.question_id], {x.passage_id: s for x, s in zip(passages, scores)})


def test_retriever_ranks_and_searches_as_the_run(trained: Path, split) -> None:
    from sentence_transformers import SentenceTransformer

    from uae import Hit, Retriever

    retriever = Retriever.load(trained)
    assert retriever.source == trained / "encoder"
    model = SentenceTransformer(str(trained / "encoder"), device="cpu")
    texts = [p.text for p in split.all_passages]
    ours = retriever.embed_passages(texts)
    np.testing.assert_allclose(ours, model.encode_document(texts), atol=1e-5, rtol=0)

    rankings = json.loads((trained / "rankings.json").read_text())
    for question in split.evaluable_questions:
        passages = split.passages(question.document_id)
        hits = retriever.rank(question.text, [p.text for p in passages])
        assert [h.rank for h in hits] == list(range(1, len(passages) + 1))
        assert all(a.score >= b.score - TIE for a, b in itertools.pairwise(hits))
        _assert_ranked_as(rankings[question.question_id], {passages[h.index].passage_id: h.score for h in hits})
        top2 = retriever.rank(question.text, [p.text for p in passages], k=2)
        assert [h.index for h in top2] == [h.index for h in hits[:2]]
        everything = retriever.rank(question.text, [p.text for p in passages], k=10_000)  # k beyond: clamped
        assert len(everything) == len(passages)

    # index + search over the whole split (FAISS): the exact top 3 by brute force, with the ids given
    ids = [p.passage_id for p in split.all_passages]
    assert retriever.index(texts, ids=ids) is retriever and len(retriever) == len(texts)
    questions = [q.text for q in split.evaluable_questions]
    brute = retriever.embed_queries(questions) @ ours.T
    batched = retriever.search(questions, k=3)
    for i, question in enumerate(questions):
        single = retriever.search(question, k=3)
        assert all(isinstance(h, Hit) for h in single) and [h.id for h in single] == [h.id for h in batched[i]]
        assert [h.score for h in single] == pytest.approx([h.score for h in batched[i]], abs=1e-5)
        assert [h.score for h in single] == pytest.approx(sorted(brute[i], reverse=True)[:3], abs=1e-5)
        assert all(h.id == ids[h.index] and h.text == texts[h.index] for h in single)
    assert len(retriever.search(questions[0], k=10_000)) == len(texts)


def test_retriever_bad_input_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    from uae import Retriever

    retriever = Retriever.load(trained / "encoder")  # an encoder folder works as well as its run folder
    cases = [
        (lambda: retriever.rank("a question", []), "empty"),
        (lambda: retriever.rank("", ["a passage"]), "question"),
        (lambda: retriever.rank("   ", ["a passage"]), "question"),
        (lambda: retriever.rank("a question", "one passage, not a list"), "list of strings"),
        (lambda: retriever.rank("a question", ["ok", 3]), "passages[1]"),
        (lambda: retriever.rank("a question", ["a passage"], k=0), "k=0"),
        (lambda: retriever.search("a question"), "index(passages) first"),
        (lambda: retriever.index([]), "empty"),
        (lambda: retriever.index(["a", "b"], ids=["x"]), "1 ids for 2 passages"),
        (lambda: retriever.index(["a", "b"], ids=["x", "x"]), "not unique"),
    ]
    for call, needle in cases:
        with pytest.raises(UAEError, match=None) as info:
            call()
        assert needle in str(info.value), (needle, str(info.value))

    (tmp_path / "empty").mkdir()
    for path, needle in [
        (tmp_path / "nowhere", "no such folder"),
        (tmp_path / "empty", "neither a UAE run folder"),
        (trained / "zero_shot", "run folder without an encoder"),  # evaluated, never trained
        (trained / "results.json", "is a file"),
    ]:
        with pytest.raises(UAEError) as info:
            Retriever.load(path)
        assert needle in str(info.value), (needle, str(info.value))


def test_importing_the_api_is_cheap() -> None:
    code = "import sys; from uae import Retriever, Hit; print(sorted(m for m in ('torch', 'transformers', 'faiss', 'numpy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_export_writes_a_copy_and_upgrades_an_old_export(trained: Path, tmp_path: Path, split, capsys) -> None:
    from sentence_transformers import SentenceTransformer

    code, done = export(str(trained), "--to", str(tmp_path / "copy"), capsys=capsys)
    assert code == 0, done.err[-3000:]
    copy = tmp_path / "copy"
    assert (copy / "README.md").read_text() == (trained / "encoder" / "README.md").read_text()
    texts = [p.text for p in split.all_passages]
    expected = SentenceTransformer(str(trained / "encoder"), device="cpu").encode_document(texts)
    np.testing.assert_allclose(SentenceTransformer(str(copy), device="cpu").encode_document(texts), expected, atol=1e-6)
    code, again = export(str(trained), "--to", str(copy), capsys=capsys)  # an earlier export is replaced
    assert code == 0, again.err[-3000:]

    # A run exported before encoders were sentence-transformers folders: a bare transformers folder (shared
    # towers, the only layout of that time that a config could ask for).
    old = tmp_path / "old-run"
    shutil.copytree(trained, old, ignore=shutil.ignore_patterns("checkpoints", "encoder"))
    shutil.copytree(trained / "encoder" / "query", old / "encoder", ignore=shutil.ignore_patterns("sentence_bert_config.json"))
    result = json.loads((old / "results.json").read_text())
    result["config"]["model"]["encoder"]["shared"] = True
    (old / "results.json").write_text(json.dumps(result))
    from uae import Retriever
    from uae.retrieval.encoder import DualEncoder

    with pytest.raises(UAEError, match="python -m uae.export"):
        Retriever.load(old)
    code, upgraded = export(str(old), capsys=capsys)  # in place, from the run's config
    assert code == 0, upgraded.err[-3000:]
    model = SentenceTransformer(str(old / "encoder"), device="cpu")
    assert model.prompts["query"] == "search: "
    settings = {k: result["config"]["model"]["encoder"][k] for k in ("pooling", "query_instruction", "query_max_length", "passage_max_length")}
    reference = DualEncoder("old", cache_dir=tmp_path, local_path=trained / "encoder" / "query", **settings)
    np.testing.assert_allclose(model.encode_document(texts), reference.encode(texts, "passage", progress=False), atol=1e-5)
    queries = [q.text for q in split.questions]
    np.testing.assert_allclose(model.encode_query(queries), reference.encode(queries, "query", progress=False), atol=1e-5)
    assert "minilm+uae" in (old / "encoder" / "README.md").read_text()

    # separate towers in that old layout (passage/ inside the query tower) cannot be converted: said so
    (old / "encoder" / "modules.json").unlink()
    result["config"]["model"]["encoder"]["shared"] = False
    (old / "results.json").write_text(json.dumps(result))
    code, captured = export(str(old), "--to", str(tmp_path / "never"), capsys=capsys)
    assert_main_error(code, captured, f"{old / 'encoder'}: separate", "cannot be converted")  # the run's encoder named
    assert ".tmp-" not in captured.err  # not the export's temporary copy
    assert not (tmp_path / "never").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_export_bad_input(trained: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert_main_error(*export(str(trained), "--to", str(tmp_path / "mine"), capsys=capsys), "not an earlier export")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert_main_error(*export(str(tmp_path / "nowhere"), capsys=capsys), "no such folder")
    assert_main_error(*export(str(trained / "zero_shot"), capsys=capsys), "run folder without an encoder")
    assert_main_error(*export(str(trained / "encoder"), capsys=capsys), "not a run folder")
    assert_main_error(*export(str(trained.parent / "tables" / "dev.parquet"), capsys=capsys), "needs --to")


def test_push_without_token_or_network_says_which_and_writes_nothing(trained: Path, tmp_path: Path) -> None:
    """Processes: huggingface_hub reads the token, the offline switch and the endpoint from the environment."""
    home = {"HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": "", "TRANSFORMERS_OFFLINE": ""}  # no token anywhere
    both = cli("uae.export", str(trained), "--push-to-hub", "someone/uae-test", env=home)
    assert_cli_error(both, "nothing was written or pushed", "no Hugging Face token", "offline mode is on (HF_HUB_OFFLINE=1)")

    # a token, but the hub cannot be reached (a closed local port stands for the network being down)
    unreachable = {**home, "HF_TOKEN": "hf_" + "x" * 34, "HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}
    no_network = cli("uae.export", str(trained), "--push-to-hub", "someone/uae-test", "--to", str(tmp_path / "out"),
                      env=unreachable)
    assert_cli_error(no_network, "no network: http://127.0.0.1:9 cannot be reached")
    assert "token" not in no_network.stderr.split("nothing was written or pushed:")[1]
    assert not (tmp_path / "out").exists()

    table = cli("uae.export", str(trained.parent / "tables" / "dev.parquet"), "--push-to-hub", "someone/utilities", env=home)
    assert_cli_error(table, "no Hugging Face token")


def test_push_uploads_the_folder_with_a_card_naming_the_repo(trained: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The upload itself, with huggingface_hub's network calls replaced by recorders (tests never reach a hub)."""
    import huggingface_hub
    from huggingface_hub import HfApi, constants
    from huggingface_hub.repocard import RepoCard

    from uae import export

    uploads: list[dict] = []

    def upload_folder(self, *, folder_path: str, repo_id: str, repo_type: str, **kwargs):
        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        uploads.append({"repo": repo_id, "type": repo_type, "files": files, "card": (Path(folder_path) / "README.md").read_text()})

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    monkeypatch.setattr(HfApi, "whoami", lambda self, *a, **k: {"name": "someone"})
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **k: repo_id)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(RepoCard, "validate", lambda self, repo_type=None: None)
    assert huggingface_hub.get_token()

    before = (trained / "encoder" / "README.md").read_text()
    assert export.main([str(trained), "--push-to-hub", "someone/uae-test"]) == 0
    assert export.main([str(trained.parent / "tables" / "dev.parquet"), "--push-to-hub", "someone/utilities"]) == 0
    model, dataset = uploads
    assert (model["repo"], model["type"], dataset["repo"], dataset["type"]) == ("someone/uae-test", "model", "someone/utilities", "dataset")
    assert {"modules.json", "router_config.json", "query/model.safetensors", "passage/model.safetensors", "README.md"} <= set(model["files"])
    assert 'SentenceTransformer("someone/uae-test")' in model["card"]
    assert dataset["files"] == ["README.md", "data/dev.parquet"]
    assert (trained / "encoder" / "README.md").read_text() == before  # the run's own card is untouched
    assert "pushed" in capsys.readouterr().out

    def refused(self, repo_type=None):
        raise ValueError("bad metadata")

    monkeypatch.setattr(RepoCard, "validate", refused)
    assert export.main([str(trained), "--push-to-hub", "someone/uae-test"]) == 2
    assert "the hub rejects the card's metadata (bad metadata); nothing was pushed" in capsys.readouterr().err
    assert len(uploads) == 2


def test_utility_tables_export_as_datasets(trained: Path, tmp_path: Path, capsys) -> None:
    import pyarrow.parquet as pq
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from uae.storage.fingerprint import fingerprint
    from uae.table.read import read_table_spec

    cache = str(tmp_path / "datasets-cache")
    committed = ROOT / "experiments" / "qasper" / "utilities" / "dev.parquet"  # written before document_id
    as_is = load_dataset("parquet", data_files=str(committed), split="train", cache_dir=cache)
    assert len(as_is) == pq.read_metadata(committed).num_rows

    for table in (committed, trained.parent / "tables" / "dev.parquet"):
        out = tmp_path / table.parent.parent.name
        code, done = export(str(table), "--to", str(out), capsys=capsys)
        assert code == 0, done.err[-3000:]
        spec = read_table_spec(table)
        loaded = load_dataset(str(out), cache_dir=cache)  # the card's configs name the split and its file
        rows = loaded[spec["split"]]
        original = pq.read_table(table).to_pylist()
        assert len(rows) == len(original) and "document_id" in rows.column_names
        assert rows["utility"] == [r["utility"] for r in original]
        assert read_table_spec(out / "data" / f"{spec['split']}.parquet") == spec  # the metadata travels along
        card = DatasetCard.load(out / "README.md")
        assert card.data.task_categories == ["text-retrieval"]
        assert fingerprint(spec) in card.text and spec["scorer"]["model_id"] in card.text

    (tmp_path / "not-a-table.parquet").write_bytes(b"PAR1 nonsense")
    assert_main_error(*export(str(tmp_path / "not-a-table.parquet"), "--to", str(tmp_path / "x"), capsys=capsys), "cannot be read as a utility table")
    assert not (tmp_path / "x").exists()


def test_search_cli(trained: Path, tmp_path: Path, split, capsys) -> None:
    from uae import Retriever

    passages = tmp_path / "passages.jsonl"
    passages.write_text("".join(json.dumps({"_id": p.passage_id, "text": p.text}) + "\n" for p in split.all_passages))
    question = split.evaluable_questions[0].text
    code, done = search(str(trained), "--passages", str(passages), "--question", question, "--k", "3", "--json", capsys=capsys)
    assert code == 0, done.err[-3000:]
    hits = [json.loads(line) for line in done.out.splitlines()]
    expected = Retriever.load(trained).index([p.text for p in split.all_passages], [p.passage_id for p in split.all_passages]).search(question, 3)
    assert [h["id"] for h in hits] == [h.id for h in expected] and [h["rank"] for h in hits] == [1, 2, 3]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)

    code, table = search(str(trained / "encoder"), "--passages", str(passages), "--question", question, "--k", "1000", capsys=capsys)
    assert code == 0, table.err[-3000:]
    assert len(table.out.splitlines()) == len(split.all_passages)  # k beyond the corpus: every passage

    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "bad.jsonl").write_text('{"_id": "a", "text": "fine"}\n{"_id": "b"}\n')
    for args, needles in [
        (["--passages", str(tmp_path / "empty.jsonl"), "--question", question], ["holds no passages"]),
        (["--passages", str(tmp_path / "bad.jsonl"), "--question", question], ["bad.jsonl, line 2", '"text"']),
        (["--passages", str(tmp_path / "missing.jsonl"), "--question", question], ["no such file"]),
        (["--passages", str(passages), "--question", "  "], ["--question is empty"]),
        (["--passages", str(passages), "--question", question, "--k", "0"], ["--k 0"]),
    ]:
        assert_main_error(*search(str(trained), *args, capsys=capsys), *needles)
    assert_main_error(*search(str(tmp_path), "--passages", str(passages), "--question", question, capsys=capsys), "neither a UAE run folder")


def readme_blocks() -> tuple[str, str]:
    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    found = re.search(
        r"<!-- use-elsewhere:begin -->\n```bash\n(.*?)```\n\n```python\n(.*?)```\n<!-- use-elsewhere:end -->", text, re.DOTALL
    )
    assert found, "docs/models.md lost its use-elsewhere block"
    return found.group(1), found.group(2)


def test_readme_use_elsewhere_runs_as_written(trained: Path, tmp_path: Path) -> None:
    """The use-elsewhere blocks of docs/models.md, as written, in a folder whose newest quick-start run is the
    tiny trained run."""
    from uae import Retriever

    bash, python = readme_blocks()
    runs = tmp_path / "logs" / "quickstart" / "runs"
    runs.mkdir(parents=True)
    (runs / "2026-01-01_00-00-00").symlink_to(trained)
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),  # this checkout's uae, from another folder
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` is this one
    }
    shell = subprocess.run(["bash", "-euo", "pipefail", "-c", bash], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600, check=False)
    assert shell.returncode == 0, shell.stderr[-3000:]
    assert (tmp_path / "my-retriever" / "modules.json").is_file() and (tmp_path / "my-retriever" / "README.md").is_file()
    corpus = [json.loads(line) for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    question = re.search(r'--question "([^"]+)"', bash).group(1)
    retriever = Retriever.load(trained)
    expected = retriever.index([c["text"] for c in corpus], [c["_id"] for c in corpus]).search(question, k=2)
    printed = [line.split()[2] for line in shell.stdout.splitlines() if re.match(r"\s+\d+\s", line)]
    assert printed == [h.id for h in expected]

    done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    passages = json.loads(re.search(r"^passages = (\[.*\])$", python, re.MULTILINE).group(1))
    question = re.search(r'^question = "(.*)"$', python, re.MULTILINE).group(1)
    similarity = [float(x) for x in re.findall(r"-?\d+\.\d+", done.stdout.split("]])")[0])]
    hits = [line.split(" ", 2) for line in done.stdout.splitlines() if re.match(r"\d \d", line)]
    ours = retriever.rank(question, passages)
    assert [text for _, _, text in hits] == [h.text for h in ours]  # the order UAE's own retriever gives
    for rank, score, text in hits:  # and the scores sentence-transformers printed
        assert float(score) == pytest.approx(similarity[passages.index(text)], abs=2e-4)
    top = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(top) == 3 and all(i % 2 == ours[0].index for i in top)  # the best passage's copies in the corpus


@pytest.mark.slow
def test_quickstart_export_ranks_held_out_questions_as_the_run(tmp_path: Path, shared_data: Path) -> None:
    """The issue's acceptance check at full size: `make run`'s quick start (MiniLM fine-tuned on 89 QASPER
    train papers), exported, loads in sentence-transformers and ranks every held-out dev question's
    paragraphs in the order uae.run did. The committed train table is given as is (utility.table), so no
    LLM runs whatever the local SmolLM2 conversion hashes to; reader=none. About 10 minutes on 2 CPU cores."""
    from sentence_transformers import SentenceTransformer

    from uae.data.qasper import load_qasper

    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "uae.run", "+experiment=quickstart", "reader=none", "stages=[fit,evaluate]",
         f"utility.table={ROOT / 'experiments' / 'qasper' / 'utilities' / 'train.parquet'}", f"hydra.run.dir={run}",
         f"paths.cache_dir={tmp_path / 'cache'}", f"data.dir={shared_data}", "retrieval.progress=false"],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=3600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    exported = cli("uae.export", str(run), "--to", str(tmp_path / "my-retriever"))
    assert exported.returncode == 0, exported.stderr[-3000:]

    model = SentenceTransformer(str(tmp_path / "my-retriever"), device="cpu")
    split = load_qasper("dev", shared_data, allow_hub=False, max_documents=28)
    rankings = json.loads((run / "rankings.json").read_text())
    assert len(rankings) == len(split.evaluable_questions) > 50
    documents = {q.document_id for q in split.evaluable_questions}
    embedded = {d: model.encode_document([p.text for p in split.passages(d)], batch_size=64) for d in documents}
    queries = model.encode_query([q.text for q in split.evaluable_questions], batch_size=64)
    for question, query in zip(split.evaluable_questions, queries):
        scores = embedded[question.document_id] @ query
        passages = split.passages(question.document_id)
        _assert_ranked_as(rankings[question.question_id], {p.passage_id: float(s) for p, s in zip(passages, scores)})


def test_search_cli_encodes_a_corpus_once_and_answers_many_questions(
    trained: Path, tmp_path: Path, split, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uae import Retriever

    monkeypatch.setenv("UAE_CACHE_DIR", str(tmp_path / "cache"))
    passages = tmp_path / "passages.jsonl"
    passages.write_text("".join(json.dumps({"_id": p.passage_id, "text": p.text}) + "\n" for p in split.all_passages))
    questions = [q.text for q in split.evaluable_questions[:3]]
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(questions[1:])))
    args = [str(trained), "--passages", str(passages), "--question", questions[0], "--queries", str(queries), "--k", "3", "--json"]
    code, first = search(*args, capsys=capsys)
    assert code == 0, first.err[-3000:]
    kept = list((tmp_path / "cache" / "search").glob("*.pt"))
    assert len(kept) == 1 and str(kept[0]) in first.err
    rows = [json.loads(line) for line in first.out.splitlines()]
    expected = Retriever.load(trained).index([p.text for p in split.all_passages], [p.passage_id for p in split.all_passages]).search(questions, 3)
    assert [r["id"] for r in rows] == [h.id for hits in expected for h in hits]
    assert [r.get("query_id") for r in rows] == [None] * 3 + ["q0"] * 3 + ["q1"] * 3

    monkeypatch.setattr(Retriever, "index", lambda *a, **k: pytest.fail("the kept corpus was encoded again"))
    code, second = search(*args, capsys=capsys)
    assert code == 0 and second.out == first.out
    passages.write_text(passages.read_text() + json.dumps({"_id": "new", "text": "one more passage"}) + "\n")
    code, other = search(*args[:-1], "--index-file", str(kept[0]), capsys=capsys)  # another corpus in that file: refused
    assert code == 2 and "holds another corpus" in other.err


def test_retriever_saves_and_loads_an_approximate_index(trained: Path, tmp_path: Path, split) -> None:
    from uae import Retriever

    texts, ids = [p.text for p in split.all_passages], [p.passage_id for p in split.all_passages]
    questions = [q.text for q in split.evaluable_questions]
    exact = Retriever.load(trained).index(texts, ids).search(questions, 5)
    hnsw = Retriever.load(trained).index(texts, ids, factory="HNSW8", ef_search=200)
    assert [[h.id for h in hits] for hits in hnsw.search(questions, 5)] == [[h.id for h in hits] for hits in exact]
    saved = hnsw.save_index(tmp_path / "corpus.pt")
    loaded = Retriever.load(trained).load_index(saved, ef_search=200)
    assert len(loaded) == len(texts) and loaded._index is not None and loaded._index.spec.factory == "HNSW8"
    assert [[(h.id, h.text) for h in hits] for hits in loaded.search(questions, 5)] == [[(h.id, h.text) for h in hits] for hits in exact]

    other = Retriever.load(trained)
    other.encoder.fingerprint_spec = lambda side=None: {"another": "encoder"}  # type: ignore[method-assign]
    with pytest.raises(UAEError, match="indexed with another encoder"):
        other.load_index(saved)
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(UAEError, match="no saved index there, or a damaged one"):
        Retriever.load(trained).load_index(saved)
