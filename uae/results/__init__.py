"""What a run leaves in its folder (results.json, rankings, the encoder and its model card, the
machine it ran on) and how the stages, the exports and the analysis tools read it back.

Named ``results``, not ``runs``: ``uae.run`` is the entry point, and the two should not read alike.
"""
