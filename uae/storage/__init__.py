"""Storage rules every cache follows: atomic writes, locked temporary files, fingerprints of what made
a file, content digests checked on every read, tensor caches.
"""
