"""Reading and writing tokenizers: minitx's own text format, tiktoken, Hugging Face.

minitx's format (``minitx-bpe 1``) is plain UTF-8 text, one fact per line,
so a person can read it and ``diff`` two of them::

    minitx-bpe 1
    pattern "'(?i:[sdmt]|ll|ve|re)|..."          the split regex, as a JSON string
    options {"prefix_space": false, "whole_token_shortcut": true}
    bytes 0 1 2 ... 255                           id of each byte value 0..255
    specials 1
    4096 "<|endoftext|>"                          id, then the text as JSON
    merges 3839
    0 101 32 256                                  rank, left id, right id, new id
    ...

Ranks are explicit because a tiktoken vocabulary, converted to merges, has
several pairs that build the same token (and therefore share its rank).
Lines starting with ``#`` are comments. No pickle: loading a file can never
run code.

tiktoken's ``.tiktoken`` rank files hold ``<base64 token bytes> <rank>`` per
line, and a token's rank is also its id. Hugging Face's ``tokenizer.json``
holds a vocab (token string -> id) and an ordered list of merges; its token
strings spell bytes with GPT-2's printable byte alphabet
(:func:`bytes_to_unicode`).
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Mapping

from ..fileio import atomic_write_text
from .bpe import BPETokenizer, json_dumps, render_token
from .patterns import GPT2_SPLIT_PATTERN, resolve_pattern

MAGIC = "minitx-bpe"
VERSION = 1


# ---------------------------------------------------------------------------
# minitx's own format
# ---------------------------------------------------------------------------
def dumps_bpe(tok: BPETokenizer) -> str:
    options = {"prefix_space": tok.prefix_space, "whole_token_shortcut": tok.whole_token_shortcut}
    lines = [
        f"{MAGIC} {VERSION}",
        f"pattern {json_dumps(tok.pattern)}",
        f"options {json.dumps(options, sort_keys=True)}",
        "bytes " + " ".join(map(str, tok.byte_ids)),
        f"specials {len(tok.special_tokens)}",
    ]
    lines += [f"{i} {json_dumps(s)}" for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    lines.append(f"merges {len(tok._merge_list)}")
    lines += [f"{rank} {a} {b} {new}" for rank, a, b, new in tok._merge_list]
    return "\n".join(lines) + "\n"


def vocab_listing(tok: BPETokenizer) -> str:
    """One line per id: ``id [token]`` for bytes, ``id [left][right] -> [token]`` for merges."""
    made_from = {}
    for _, a, b, new in tok._merge_list:
        made_from.setdefault(new, (a, b))
    lines = []
    for i in sorted(tok.vocab):
        token = f"[{render_token(tok.vocab[i])}]"
        if i in tok.inverse_special_tokens:
            lines.append(f"{i} {token} (special)")
        elif i in made_from:
            a, b = made_from[i]
            lines.append(f"{i} [{render_token(tok.vocab[a])}][{render_token(tok.vocab[b])}] -> {token}")
        else:
            lines.append(f"{i} {token}")
    return "\n".join(lines) + "\n"


def save_bpe(tok: BPETokenizer, path: str | os.PathLike, vocab_listing: bool = True) -> None:
    atomic_write_text(path, dumps_bpe(tok))
    if vocab_listing:
        atomic_write_text(str(path) + ".vocab", globals()["vocab_listing"](tok))


def loads_bpe(text: str, cls=BPETokenizer, source: str = "<string>") -> BPETokenizer:
    """Parse the ``minitx-bpe 1`` format; every problem names the line."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    pos = 0

    def fail(n, what, line):
        raise ValueError(f"{source} line {n}: expected {what}, got {line[:80]!r} (not a valid minitx tokenizer file?)")

    def take(key, what):
        nonlocal pos
        if pos >= len(lines):
            raise ValueError(f"{source}: ends early, expected {what} (file truncated?)")
        n, line = lines[pos]
        pos += 1
        head, _, rest = line.partition(" ")
        if head != key:
            fail(n, what, line)
        return n, rest

    if not lines or lines[0][1].split(" ")[0] != MAGIC:
        raise ValueError(f"{source}: not a minitx tokenizer file (first line should be '{MAGIC} {VERSION}')")
    n, version = take(MAGIC, f"'{MAGIC} {VERSION}'")
    if version.strip() != str(VERSION):
        raise ValueError(f"{source} line {n}: format version {version.strip()!r} is not supported (expected {VERSION})")
    try:
        n, rest = take("pattern", "pattern <JSON string>")
        pattern = json.loads(rest)
        n, rest = take("options", "options <JSON object>")
        options = json.loads(rest)
        n, rest = take("bytes", "bytes <256 ids>")
        byte_ids = [int(x) for x in rest.split()]
        n, rest = take("specials", "specials <count>")
        specials = {}
        for _ in range(int(rest)):
            if pos >= len(lines):
                raise ValueError(f"{source}: ends early inside the special tokens (file truncated?)")
            n, line = lines[pos]
            pos += 1
            i, _, name = line.partition(" ")
            specials[json.loads(name)] = int(i)
        n, rest = take("merges", "merges <count>")
        count = int(rest)
        merges = []
        for _ in range(count):
            if pos >= len(lines):
                raise ValueError(f"{source}: ends early after {len(merges)} of {count} merges (file truncated?)")
            n, line = lines[pos]
            pos += 1
            fields = line.split()
            if len(fields) != 4:
                fail(n, "'<rank> <left id> <right id> <new id>'", line)
            merges.append(tuple(int(x) for x in fields))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{source} line {n}: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(source):
            raise
        raise ValueError(f"{source} line {n}: {exc}") from None
    if pos != len(lines):
        n, line = lines[pos]
        fail(n, "end of file", line)
    if not isinstance(pattern, str) or not isinstance(options, dict):
        raise ValueError(f"{source}: pattern must be a JSON string and options a JSON object")
    tok = cls.__new__(cls)
    tok.pattern = resolve_pattern(pattern)
    try:
        tok._init_tables(
            byte_ids,
            merges,
            specials,
            whole_token_shortcut=bool(options.get("whole_token_shortcut", True)),
            prefix_space=bool(options.get("prefix_space", False)),
        )
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return tok


def load_bpe(path: str | os.PathLike, cls=BPETokenizer) -> BPETokenizer:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a minitx tokenizer file (not UTF-8 text)") from None
    return loads_bpe(text, cls, source=str(path))


# ---------------------------------------------------------------------------
# tiktoken rank files
# ---------------------------------------------------------------------------
def read_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """``{token bytes: rank}`` from a ``.tiktoken`` file."""
    ranks = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError:
                raise ValueError(f"{path} line {n}: expected '<base64 token> <rank>', got {line[:80]!r}") from None
    return ranks


def tokenizer_from_ranks(
    ranks: Mapping[bytes, int], pattern: str, special_tokens: Mapping[str, int] | None = None, cls=BPETokenizer
) -> BPETokenizer:
    """Turn tiktoken's token -> rank table into minitx's merge table.

    tiktoken's rule: merge the adjacent pair whose *concatenation* has the
    lowest rank. So every way of cutting a token into two tokens is a merge
    with that token's rank (``b"hello"`` from ``b"h" + b"ello"``,
    ``b"he" + b"llo"``, ...), and the token's id is its rank.
    """
    byte_ids = []
    for b in range(256):
        single = bytes([b])
        if single not in ranks:
            raise ValueError(f"rank file: byte {b} has no token; a byte-level BPE needs all 256")
        byte_ids.append(ranks[single])
    merges = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left = ranks.get(token[:cut])
            if left is not None:
                right = ranks.get(token[cut:])
                if right is not None:
                    merges.append((rank, left, right, rank))
    tok = cls.__new__(cls)
    tok.pattern = resolve_pattern(pattern)
    tok._init_tables(byte_ids, merges, dict(special_tokens or {}), whole_token_shortcut=True)
    return tok


def load_tiktoken(path, pattern, special_tokens=None, cls=BPETokenizer) -> BPETokenizer:
    return tokenizer_from_ranks(read_tiktoken_ranks(path), pattern, special_tokens, cls)


# ---------------------------------------------------------------------------
# Hugging Face tokenizer.json
# ---------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable alphabet for bytes: byte -> a visible character.

    Printable Latin-1 bytes stand for themselves; the other 68 (control
    characters, space, ...) are shifted to U+0100 onwards, so a space becomes
    ``"Ġ"`` and a newline ``"Ċ"``. Hugging Face stores byte-level vocabularies
    in this alphabet.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


def _find_byte_level(pre: dict | None, path) -> tuple[str, bool]:
    """The split pattern and add_prefix_space of a supported pre-tokenizer."""
    if pre is None:
        raise ValueError(f"{path}: pre_tokenizer is null; minitx loads byte-level BPE tokenizers only")
    kind = pre.get("type")
    if kind == "ByteLevel":
        if not pre.get("use_regex", True):
            raise ValueError(f"{path}: ByteLevel with use_regex=false and no Split is not supported")
        return GPT2_SPLIT_PATTERN, bool(pre.get("add_prefix_space", False))
    if kind == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (
            len(steps) == 2
            and steps[0].get("type") == "Split"
            and steps[1].get("type") == "ByteLevel"
            and not steps[1].get("use_regex", True)
            and steps[0].get("behavior") == "Isolated"
            and "Regex" in steps[0].get("pattern", {})
        ):
            return steps[0]["pattern"]["Regex"], bool(steps[1].get("add_prefix_space", False))
    raise ValueError(f"{path}: pre_tokenizer of type {kind!r} is not supported (expected ByteLevel or Split + ByteLevel)")


def load_huggingface(path: str | os.PathLike, cls=BPETokenizer) -> BPETokenizer:
    """Build a tokenizer from a Hugging Face byte-level BPE ``tokenizer.json``."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a tokenizer.json ({exc})") from None
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: model type {model.get('type')!r} is not supported (expected 'BPE')")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"{path}: BPE option {key}={model[key]!r} is not supported")
    if model.get("byte_fallback"):
        raise ValueError(f"{path}: byte_fallback BPE (SentencePiece style) is not supported")
    if spec.get("normalizer") is not None:
        raise ValueError(f"{path}: normalizer {spec['normalizer'].get('type')!r} is not supported (expected null)")
    pattern, prefix_space = _find_byte_level(spec.get("pre_tokenizer"), path)

    decoder = bytes_to_unicode()
    vocab = model["vocab"]
    byte_ids = []
    for b in range(256):
        if decoder[b] not in vocab:
            raise ValueError(f"{path}: the vocab has no token for byte {b} ({decoder[b]!r}); not a byte-level BPE")
        byte_ids.append(vocab[decoder[b]])
    merges = []
    for rank, merge in enumerate(model.get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        try:
            merges.append((rank, vocab[left], vocab[right], vocab[left + right]))
        except KeyError:
            raise ValueError(f"{path}: merge {rank} ({left!r}, {right!r}) uses a token missing from the vocab") from None
    specials = {}
    ordinary_ids = set(byte_ids) | {m[3] for m in merges}
    for added in spec.get("added_tokens", []):
        # Hugging Face cuts every added token out of the text before BPE runs,
        # which is what minitx does for special tokens (with allowed_special="all").
        if added["id"] not in ordinary_ids:
            specials[added["content"]] = added["id"]
    tok = cls.__new__(cls)
    tok.pattern = resolve_pattern(pattern)
    # Hugging Face encodes a chunk that is a whole token directly only with ignore_merges.
    tok._init_tables(
        byte_ids, merges, specials, whole_token_shortcut=bool(model.get("ignore_merges")), prefix_space=prefix_space
    )
    return tok
