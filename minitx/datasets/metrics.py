"""Evaluation metrics: accuracy, entity-level F1, corpus BLEU.

**Entity-level F1** (CoNLL's measure) scores whole entities, not tokens: a
predicted entity counts only if its type *and both boundaries* match a gold
entity exactly. Token accuracy would be ~85% for a tagger that outputs
only ``O``; its entity F1 is 0.

**BLEU** (Papineni et al., 2002) compares n-grams of a translation with a
reference, over the whole corpus::

    p_n  = (clipped n-gram matches) / (n-grams in the hypotheses),  n = 1..4
    BP   = 1 if c > r else exp(1 - r / c)      c, r: total hypothesis / reference length
    BLEU = 100 * BP * exp(mean_n log p_n)

"Clipped": a hypothesis n-gram counts at most as often as it occurs in the
reference, so "the the the" does not score. This implementation agrees
with ``sacrebleu.corpus_bleu(..., tokenize="none")`` (a test checks it),
including sacrebleu's default "exp" smoothing of zero counts.
"""
from __future__ import annotations

import math
from collections import Counter


def accuracy(predictions, labels) -> float:
    predictions, labels = list(predictions), list(labels)
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"accuracy: got {len(predictions)} predictions for {len(labels)} labels, "
                         "expected the same non-zero number")
    return sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def bio_spans(tags) -> set[tuple[str, int, int]]:
    """``["B-PER", "I-PER", "O", "B-LOC"] -> {("PER", 0, 2), ("LOC", 3, 4)}`` (end exclusive).

    An ``I-X`` that does not continue an ``X`` entity starts a new one (the
    lenient CoNLL convention), so a tagger is not punished twice for one slip.
    """
    spans, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues):
            kind, start = label, i
    return spans


def entity_f1(predicted_tags, gold_tags) -> dict:
    """Micro-averaged entity precision, recall and F1 over sentences of BIO tags."""
    tp = n_pred = n_gold = 0
    for pred, gold in zip(predicted_tags, gold_tags):
        p, g = bio_spans(pred), bio_spans(gold)
        tp += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_gold": n_gold, "n_pred": n_pred}


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses, references, max_n: int = 4) -> float:
    """Corpus BLEU (0-100) of whitespace-tokenised strings, one reference each."""
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"corpus_bleu: got {len(hypotheses)} hypotheses for {len(references)} references, "
                         "expected one reference per hypothesis")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_len += len(h)
        ref_len += len(r)
        for n in range(1, max_n + 1):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    if hyp_len == 0:
        return 0.0
    log_p, smooth = 0.0, 1.0
    for m, t in zip(matches, totals):
        if t == 0:
            return 0.0
        if m == 0:  # sacrebleu's "exp" smoothing: 1 / (2^k * total) for the k-th zero count
            smooth *= 2
            p = 1.0 / (smooth * t)
        else:
            p = m / t
        log_p += math.log(p) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * bp * math.exp(log_p)
