"""The names of the retrieval metrics, apart from the code that computes them (torch, torchmetrics), so
that what only reads results (a Hydra callback, tables of finished runs) loads without the
deep-learning stack: a refused config is answered before torch is imported."""

RETRIEVAL_METRICS: tuple[str, ...] = ("hit@1", "recall@1", "recall@5", "map", "mrr", "ndcg@10")
