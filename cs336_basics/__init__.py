"""cs336_basics: a from-scratch decoder-only Transformer LM stack (CS336 Assignment 1).

Hand-written module. The public API is imported lazily, so ``import cs336_basics`` is instant
and the tokenizer stages of the command line never pay for importing torch::

    >>> from cs336_basics import Tokenizer, TransformerLM
"""

from importlib import import_module

# public name -> module that defines it
_API = {
    "train_bpe": "bpe",
    "Tokenizer": "tokenizer",
    "tokenize_file": "token_files",
    "TransformerLM": "model",
    "AdamW": "optimizer",
    "cosine_lr": "optimizer",
    "WeightAverage": "optimizer",
    "cross_entropy": "nn_utils",
    "perplexity": "nn_utils",
    "clip_gradients": "nn_utils",
    "get_batch": "data",
    "save_checkpoint": "serialization",
    "load_checkpoint": "serialization",
    "generate": "decoding",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value  # cache: the next lookup is a plain attribute
        return value
    raise AttributeError(f"module 'cs336_basics' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
