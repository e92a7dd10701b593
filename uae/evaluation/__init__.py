"""Scoring retrievers and teachers: retrieval and answer metrics as pure functions over rankings
(metrics.py), one retriever over a split (ranking.py), the LLM teacher's tables against the
annotations (teacher.py), and paired significance tests (significance.py).
"""
