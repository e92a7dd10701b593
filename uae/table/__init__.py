"""The utility table, UAE's central artefact: its format, reading and checking it, finding the one a run
can use, building it from a scorer, the training groups it yields and its FlagEmbedding file.
"""
