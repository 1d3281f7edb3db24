"""``minitx embed``, ``minitx search``, and Hugging Face folders for ``minitx generate``.

    minitx generate --checkpoint HF_FOLDER --prompt "Hello" --temperature 0 --json
    minitx embed --checkpoint MINILM_FOLDER --similarity "a river bank" "a savings bank"
    minitx search --checkpoint MINILM_FOLDER --corpus notes.txt --top-k 3 "how do I train?"

``generate`` tells a Hugging Face folder (``config.json`` with a
``model_type``) from a minitx run folder and, for the former, runs
:func:`minitx.pretrained.generation.generate`: for a decoder-only model the
prompt is continued, for an encoder-decoder it is the encoder's input.
``--json`` prints one object ``{"prompt_ids", "completion_ids",
"completion"}`` for either kind of folder.

``search`` embeds the corpus's non-empty lines once and caches the matrix
beside the file (``FILE.minitx-embeddings.npy`` + ``.json``, keyed by the
file's hash and the model's), then prints the nearest lines with their
cosine similarity. Bad folders, tensors or architectures are one line on
stderr and exit code 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import UsageError
from .options import add_adapter_option


def is_hf_folder(path) -> bool:
    """A folder whose ``config.json`` names a ``model_type`` (minitx run folders have none)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return True  # looks like one; from_pretrained will name the problem


def add_generate_options(gen) -> None:
    """The flags ``minitx generate`` gains for Hugging Face folders and machine-readable output."""
    gen.add_argument("--json", action="store_true",
                     help="print one JSON object: prompt_ids, completion_ids, completion")


def print_generation(args, prompt_ids, completion_ids, completion: str) -> None:
    if args.json:
        print(json.dumps({"prompt_ids": [int(i) for i in prompt_ids],
                          "completion_ids": [int(i) for i in completion_ids], "completion": completion}))
    else:
        print(completion)


_LOADED: dict = {}  # folder -> (model, tokenizer), for minitx generate --interactive


def generate_from_hf_folder(args, device: str = "cpu", loaded=None) -> int:
    """``minitx generate`` on a Hugging Face folder (greedy at ``--temperature 0``, ``--beam K``).

    ``loaded``: ``(model, tokenizer)`` already opened (a fine-tuned model of a Hugging Face base).
    """
    from ..models.gpt import GPT
    from ..pretrained import from_pretrained
    from ..pretrained.generation import generate

    if device != "cpu":
        raise UsageError(f"--device {device}: Hugging Face folders run on the CPU here, expected --device cpu")
    if args.stop is not None:
        raise UsageError("--stop: not supported for Hugging Face folders (they stop at their end token)")
    key = str(args.checkpoint)
    if loaded is not None:
        model, tokenizer = loaded
    else:
        if not getattr(args, "interactive", False) or key not in _LOADED:  # a prompt loop loads the folder once
            _LOADED.clear()
            _LOADED[key] = from_pretrained(args.checkpoint)
        model, tokenizer = _LOADED[key]
    if tokenizer is None:
        raise UsageError(f"{args.checkpoint}: no tokenizer.json or vocab.txt, expected a tokenizer beside the model")
    if not isinstance(model, GPT) and not hasattr(model, "decode_step"):
        raise UsageError(f"{args.checkpoint}: a {model.hf_architecture} cannot generate text, expected a GPT-2, T5 "
                         "or BART folder")
    from .options import resolve_prompt

    window = model.config.block_size if isinstance(model, GPT) else model.config.max_len
    prompt = resolve_prompt(args, tokenizer, window, default="\n")  # checked against the context window
    prompt_ids = prompt.ids
    room = window - len(prompt_ids) if isinstance(model, GPT) else model.config.max_len
    temperature, top_k, top_p = args.temperature, args.top_k, args.top_p
    if temperature is None:  # not given: decode as transformers would with this folder's generation_config
        gen = getattr(model, "generation_config", None) or {}
        temperature = float(gen.get("temperature") or 1.0) if gen.get("do_sample") else 0.0
        if gen.get("do_sample"):
            top_k = top_k if top_k is not None else gen.get("top_k")
            top_p = top_p if top_p is not None else gen.get("top_p")
    n = min(args.max_new_tokens, room)
    if n < args.max_new_tokens:
        print(f"minitx generate: warning: --max-new-tokens {args.max_new_tokens} cut to {n} (the model's "
              "context window)", file=sys.stderr)
    if n < 1:
        print_generation(args, prompt_ids, [], "")
        return 0
    completion_ids = generate(model, [prompt_ids], n, num_beams=args.beam or 1, length_penalty=args.length_penalty,
                              temperature=temperature, top_k=top_k, top_p=top_p, seed=args.seed)[0]
    text = tokenizer.decode(completion_ids)
    if not args.json and isinstance(model, GPT):
        text = prompt.text + text
    print_generation(args, prompt_ids, completion_ids, text)
    return 0


# --------------------------------------------------------------------------
# minitx embed / minitx search
# --------------------------------------------------------------------------
def _encoder_folder(folder, adapter=None):
    """``(model, tokenizer, max length)`` of an encoder folder, or of a fine-tuned one (a finetune run, an adapter)."""
    from ..finetune.models import load_for_use
    from ..pretrained import from_pretrained
    from ..pretrained.embeddings import max_sequence_length
    from ..pretrained.tokenizer import PretrainedTokenizer

    from ..models.encoder import EncoderClassifier, TransformerEncoder

    fine = load_for_use(folder, adapter)
    if fine is not None:
        if fine.kind != "hf" or not isinstance(fine.tokenizer, PretrainedTokenizer):
            raise UsageError(f"{folder}: fine-tuned from a minitx {fine.kind} base, expected a Hugging Face encoder "
                             "base (its tokenizer) to embed with")
        model, tokenizer, folder = fine.model, fine.tokenizer, fine.meta.get("base", folder)
        encoder = getattr(model, "encoder", model)
        if not isinstance(encoder, TransformerEncoder):
            raise UsageError(f"{fine.path}: a fine-tuned {type(model).__name__} is not an encoder; expected a "
                             "BERT-style base such as all-MiniLM-L6-v2")
        return encoder, tokenizer, max_sequence_length(encoder, folder if adapter is None else fine.path)
    model, tokenizer = from_pretrained(folder)
    if not isinstance(model, (TransformerEncoder, EncoderClassifier)):
        raise UsageError(f"{folder}: a {getattr(model, 'hf_architecture', type(model).__name__)} is not an encoder; "
                         "expected a BERT-style folder such as all-MiniLM-L6-v2")
    if tokenizer is None:
        raise UsageError(f"{folder}: no tokenizer.json or vocab.txt, expected a tokenizer beside the model")
    return model, tokenizer, max_sequence_length(model, folder)


def similarity_table(texts, sim) -> str:
    """A readable cosine-similarity table: rows and columns numbered, the texts listed below."""
    n = len(texts)
    lines = ["      " + "".join(f"{j:>8}" for j in range(n))]
    for i in range(n):
        lines.append(f"{i:>6}" + "".join(f"{sim[i, j]:8.3f}" for j in range(n)))
    lines += [f"{i:>6}  {t}" for i, t in enumerate(texts)]
    return "\n".join(lines)


def run_embed(args) -> int:
    from ..pretrained.embeddings import cosine_similarity, embed

    if not args.texts:
        raise UsageError("embed: got no TEXT, expected at least one text to embed")
    model, tokenizer, limit = _encoder_folder(args.checkpoint, args.adapter)
    emb = embed(model, tokenizer, args.texts, max_length=limit)  # (N, D), unit rows
    if args.similarity:
        sim = cosine_similarity(emb)
        print(json.dumps([[round(float(v), 6) for v in row] for row in sim]) if args.json
              else similarity_table(args.texts, sim))
    elif args.json:
        print(json.dumps([[float(v) for v in row] for row in emb]))
    else:
        for row in emb:
            print(" ".join(f"{v:.6f}" for v in row))
    return 0


def run_search(args) -> int:
    from ..pretrained.embeddings import CorpusIndex

    if args.top_k < 1:
        raise UsageError(f"--top-k: got {args.top_k}, expected at least 1")
    if not args.query.strip():
        raise UsageError("search: got an empty QUERY, expected some text")
    model, tokenizer, limit = _encoder_folder(args.checkpoint)
    index = CorpusIndex(args.corpus, model, tokenizer, max_length=limit)
    hits = index.search(args.query, args.top_k)
    if args.json:
        print(json.dumps([{"score": round(s, 6), "line": line} for line, s in hits]))
    else:
        for line, s in hits:
            print(f"{s:.4f}  {line}")
        print(f"({len(index.lines)} lines; embeddings {'from the cache' if index.from_cache else 'computed and cached'}"
              f" in {index.npy})", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    e = sub.add_parser("embed", help="sentence embeddings from an encoder folder (e.g. all-MiniLM-L6-v2)",
                       description="Embed texts: mean-pooled over the tokens, L2-normalised.")
    e.add_argument("--checkpoint", required=True, metavar="FOLDER",
                   help="a Hugging Face BERT-style folder, or a minitx finetune run of one (or its adapter)")
    add_adapter_option(e)
    e.add_argument("--json", action="store_true", help="print a JSON list of lists")
    e.add_argument("--similarity", action="store_true", help="print the cosine-similarity table instead")
    e.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    e.set_defaults(func=run_embed)

    s = sub.add_parser("search", help="semantic search over the lines of a text file",
                       description="Embed every non-empty line of --corpus (cached beside it) and print the "
                                   "lines nearest to QUERY.")
    s.add_argument("--checkpoint", required=True, metavar="FOLDER", help="a Hugging Face BERT-style folder")
    s.add_argument("--corpus", required=True, metavar="FILE", help="a UTF-8 text file, one document per line")
    s.add_argument("--top-k", type=int, default=5, help="how many lines to print (default 5)")
    s.add_argument("--json", action="store_true", help="print a JSON list of {score, line}")
    s.add_argument("query", metavar="QUERY", help="what to look for")
    s.set_defaults(func=run_search)


__all__ = ["add_generate_options", "add_parser", "generate_from_hf_folder", "is_hf_folder", "print_generation",
           "run_embed", "run_search"]
