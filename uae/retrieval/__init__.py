"""Retrievers: the dual encoder and its sentence-transformers layout, the passage index, dense and BM25
retrieval behind one interface (base.py), and LLM re-ranking on top of any of them.
"""
