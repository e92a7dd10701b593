"""Run folders: what a run leaves (results.json, model cards, the machine it ran on) and how tools
read it back.
"""
