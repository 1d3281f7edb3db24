"""minitx: everything inside a language model, written out in NumPy.

The package reads like the table of contents of a course:

    minitx.backend      which array library runs the maths (NumPy, or CuPy on a GPU)
    minitx.gradcheck    finite differences that prove every hand-written gradient
    minitx.nn           layers as forward/backward pairs, then modules that wrap them
    minitx.tokenizer    byte-level BPE and character tokenizers
    minitx.models       GPT (decoder-only), encoder (BERT-style), encoder-decoder
    minitx.optim        SGD, AdamW, learning-rate schedules, gradient clipping
    minitx.train        datasets, the training loop, checkpoints
    minitx.generate     sampling (greedy, temperature, top-k, top-p) with a KV cache
    minitx.beam         beam search
    minitx.datasets     generated sentiment, NER and translation data, and their metrics
    minitx.tasks        classifier, tagger and translator built on the models
    minitx.cuda         CUDA kernels (kernels/*.cu) through CuPy, with NumPy twins
    minitx.bench        benchmarks against PyTorch, tiktoken, Hugging Face, cuBLAS
    minitx.pretrained   Hugging Face GPT-2 / BERT / T5 / BART folders, embeddings, search

Importing ``minitx`` is cheap: submodules load when you import them
(``minitx.from_pretrained`` and ``minitx.save_pretrained`` load
:mod:`minitx.pretrained` on first use).
"""

__version__ = "0.1.0"


def from_pretrained(folder, **kwargs):
    """``folder -> (model, tokenizer)`` for a Hugging Face folder; see :func:`minitx.pretrained.from_pretrained`."""
    from .pretrained import from_pretrained as load

    return load(folder, **kwargs)


def save_pretrained(model, tokenizer, folder) -> None:
    """Write a folder ``transformers`` loads; see :func:`minitx.pretrained.save_pretrained`."""
    from .pretrained import save_pretrained as save

    save(model, tokenizer, folder)

