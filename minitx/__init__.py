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

Importing ``minitx`` is cheap: submodules load when you import them.
"""

__version__ = "0.1.0"
