"""Sentence embeddings and semantic search with an encoder (all-MiniLM-L6-v2 and friends).

A BERT-style encoder gives one vector per *token*. A sentence embedding is
one vector per *text*, made the way sentence-transformers makes it:

    h = encoder(ids, padding_mask)                 (B, T, D)   contextual token vectors
    e = sum_t m_t h_t / sum_t m_t                  (B, D)      mean over the real tokens (m = not padding)
    e = e / ||e||                                  (B, D)      unit length

With unit vectors, cosine similarity is a dot product, so searching a corpus
is one matrix product: ``scores = corpus_embeddings @ query`` and the top-k
rows are the nearest lines. :class:`CorpusIndex` embeds a text file once
and caches the matrix beside it (``.npy`` + JSON, no pickle), keyed by the
file's hash and the model's, so editing the file or changing the model
recomputes it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..models.encoder import TransformerEncoder, pool_forward
from .folder import PretrainedError, read_json


def max_sequence_length(model, folder: str | os.PathLike | None = None) -> int:
    """sentence-transformers' ``max_seq_length`` when the folder says so, else the position table's size."""
    limit = model.config.max_len
    if folder is not None:
        st = read_json(Path(folder) / "sentence_bert_config.json", required=False)
        if st and st.get("max_seq_length"):
            limit = min(limit, int(st["max_seq_length"]))
    return limit


def encode_batch(tokenizer, texts: list[str], max_length: int, pad_id: int = 0):
    """``texts -> (ids [B, T], padding_mask [B, T])``, right-padded, each text cut to ``max_length`` tokens.

    Truncation keeps the special tokens at both ends (``[CLS] ... [SEP]``), as Hugging Face does.
    """
    rows = []
    for text in texts:
        ids = tokenizer.encode(text)
        if len(ids) > max_length:
            keep = max_length - len(tokenizer.after)
            ids = ids[:keep] + list(tokenizer.after)
        rows.append(ids)
    T = max(len(r) for r in rows)
    ids = np.full((len(rows), T), pad_id, dtype=np.int64)  # (B, T)
    padding = np.ones((len(rows), T), dtype=bool)  # (B, T) True = padding
    for b, r in enumerate(rows):
        ids[b, : len(r)] = r
        padding[b, : len(r)] = False
    return ids, padding


def embed(model, tokenizer, texts, *, batch_size: int = 32, normalize: bool = True, max_length: int | None = None):
    """``texts -> (N, D)`` float32 sentence embeddings (mean-pooled over the mask, L2-normalised).

    Texts longer than ``max_length`` tokens are cut (keeping ``[SEP]``); the
    default is the folder's sentence-transformers ``max_seq_length`` (256 for
    all-MiniLM-L6-v2) when it has one, else the position table's size.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("texts: got an empty list, expected at least one text")
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, TransformerEncoder):
        raise PretrainedError(f"embed: got a {type(model).__name__}, expected an encoder (BERT-style) model")
    if tokenizer is None:
        raise PretrainedError("embed: the model folder has no tokenizer (expected tokenizer.json or vocab.txt)")
    max_length = max_length or getattr(model, "max_seq_length", None) or encoder.config.max_len
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else encoder.config.pad_id
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        # Sorting by length keeps the padding inside each batch small; the order is restored below.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            ids, padding = encode_batch(tokenizer, chunk, max_length, pad_id)  # (B, T), (B, T)
            h = encoder(ids, padding)  # (B, T, D)
            pooled, _ = pool_forward(h, padding, "mean")  # (B, D)
            out.append(np.asarray(pooled, dtype=np.float32))
    finally:
        encoder.train(was_training)
    emb = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
    emb[order] = np.concatenate(out, axis=0)  # (N, D) back in the caller's order
    if normalize:
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb


def cosine_similarity(a, b=None):
    """``(N, D), (M, D) -> (N, M)`` cosine similarities (``b`` defaults to ``a``)."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def top_k(query_embedding, corpus_embeddings, k: int):
    """``(D,), (N, D) -> [(row, score), ...]``: the ``k`` most similar rows, best first (ties: lower row)."""
    scores = np.asarray(corpus_embeddings, dtype=np.float64) @ np.asarray(query_embedding, dtype=np.float64)  # (N,)
    order = np.argsort(-scores, kind="stable")[: max(0, int(k))]
    return [(int(i), float(scores[i])) for i in order]


def model_fingerprint(model) -> str:
    """A hash of the architecture and every weight: the cache key's model half."""
    h = hashlib.sha256()
    h.update(json.dumps(getattr(model, "hf_config", None) or repr(model.config), sort_keys=True,
                        default=str).encode())
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(np.ascontiguousarray(p.data).tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CorpusIndex:
    """The non-empty lines of a text file and their embeddings, cached beside the file.

    Cache files: ``<corpus>.minitx-embeddings.npy`` (the ``(N, D)`` float32
    matrix) and ``<corpus>.minitx-embeddings.json`` (file hash, model hash,
    line count). A cache whose hashes do not match is recomputed and replaced.
    """

    def __init__(self, corpus: str | os.PathLike, model, tokenizer, *, max_length: int | None = None):
        self.path = Path(corpus)
        if not self.path.is_file():
            raise PretrainedError(f"{self.path}: corpus file missing (expected a text file, one document per line)")
        text = self.path.read_text(encoding="utf-8")
        self.lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not self.lines:
            raise PretrainedError(f"{self.path}: no non-empty lines (expected one document per line)")
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.key = {"file_sha256": file_sha256(self.path), "model_sha256": model_fingerprint(model),
                    "lines": len(self.lines), "format": "minitx-corpus-embeddings", "version": 1}
        self.npy = self.path.with_name(self.path.name + ".minitx-embeddings.npy")
        self.meta = self.npy.with_suffix(".json")
        self.from_cache = False
        self.embeddings = self._load_or_build()

    def _load_or_build(self):
        if self.npy.is_file() and self.meta.is_file():
            try:
                meta = json.loads(self.meta.read_text(encoding="utf-8"))
                if meta == self.key:
                    emb = np.load(self.npy, allow_pickle=False)
                    if emb.shape[0] == len(self.lines):
                        self.from_cache = True
                        return emb
            except (ValueError, OSError):
                pass  # a damaged cache is rebuilt
        emb = embed(self.model, self.tokenizer, self.lines, max_length=self.max_length)
        tmp = self.npy.with_name(self.npy.name + ".tmp.npy")
        np.save(tmp, emb, allow_pickle=False)
        os.replace(tmp, self.npy)
        self.meta.write_text(json.dumps(self.key, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return emb

    def search(self, query: str, k: int = 5) -> list[tuple[str, float]]:
        q = embed(self.model, self.tokenizer, [query], max_length=self.max_length)[0]  # (D,)
        return [(self.lines[i], s) for i, s in top_k(q, self.embeddings, k)]


__all__ = ["CorpusIndex", "cosine_similarity", "embed", "encode_batch", "max_sequence_length", "model_fingerprint",
           "top_k"]
