"""Datasets as generic records (records.py), one loader per format, and the tables built on them.

A dataset is a ``conf/data/`` config whose ``loader._target_`` returns a :class:`~uae.data.records.Split`;
nothing outside this package knows which dataset or file format a split came from.
"""
