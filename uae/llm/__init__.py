"""The LLM: loading it, the answer log-likelihood scorer that makes utilities and re-ranks, its prompt
template and prefix sharing, and the reader that answers from retrieved passages.
"""
