"""Errors and settings: the project's error types, Hydra resolvers and composition, the config schema.

The ground floor: it imports nothing else of UAE and nothing of the deep-learning stack, so that a
refused config is answered before torch is imported.
"""
