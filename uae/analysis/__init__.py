"""Read-back tools over run folders: tables, significance tests, sweep summaries, plots.

Everything here starts from folders that `python -m uae.run` has already written (results.json,
rankings.json, metrics CSVs, .hydra/) and trains nothing, so it sits at the top beside the entry
points: a change to how finished runs are read back or shown stays in this folder. The commands are
`python -m uae.analysis.report`, `.compare`, `.read`, `.sweep`, `.plots`, `.coverage`, `.agreement` and
`.label_efficiency`; `jobs` loads run and sweep folders as pandas tables for the plots and
notebooks/inspect_runs.ipynb.
"""
