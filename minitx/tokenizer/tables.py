"""What a BPE tokenizer is made of, as plain data, and the files that store it.

A byte-level BPE tokenizer is nothing but a few tables (:class:`BPETables`):
the split pattern, the id of each of the 256 bytes, the ranked merges
``(rank, left id, right id, new id)`` and the special tokens. This module
reads and writes those tables in three formats, and knows nothing about the
tokenizer class (:mod:`.bpe` builds a tokenizer from tables; :mod:`.formats`
offers the tokenizer-level load/save functions). Keeping the layers one way,
``tables`` <- ``bpe`` <- ``formats``, is what lets each be read alone.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, resolve_pattern

MAGIC = "minitx-bpe"
VERSION = 1


@dataclass(frozen=True)
class BPETables:
    """The data of a byte-level BPE tokenizer.

    Attributes:
        pattern: the split regex (see :mod:`.patterns`).
        byte_ids: ``byte_ids[b]`` is the id of the single byte ``b`` (256 distinct ids).
        merges: ``(rank, left id, right id, new id)``, sorted; encoding applies
            the adjacent pair of lowest rank first, leftmost on ties.
        special_tokens: special token text -> id.
        whole_token_shortcut: a chunk that is a whole token becomes that token
            without running the merges (tiktoken's rule; Hugging Face's only
            with ``ignore_merges``).
        prefix_space: a space is put before text that does not start with one
            (Hugging Face's ``add_prefix_space``).
    """

    pattern: str
    byte_ids: tuple[int, ...]
    merges: tuple[tuple[int, int, int, int], ...]
    special_tokens: Mapping[str, int] = field(default_factory=dict)
    whole_token_shortcut: bool = True
    prefix_space: bool = False

    @classmethod
    def make(
        cls,
        pattern: str | None,
        byte_ids: Sequence[int],
        merges: Sequence[tuple[int, int, int, int]],
        special_tokens: Mapping[str, int] | None = None,
        *,
        whole_token_shortcut: bool = True,
        prefix_space: bool = False,
    ) -> "BPETables":
        """Normalise the fields (pattern names resolved, merges sorted, tuples) and check ``byte_ids``."""
        byte_ids = tuple(int(i) for i in byte_ids)
        if len(byte_ids) != 256 or len(set(byte_ids)) != 256:
            raise ValueError(f"byte_ids: expected 256 distinct ids, got {len(set(byte_ids))} distinct of {len(byte_ids)}")
        return cls(
            resolve_pattern(pattern),
            byte_ids,
            tuple(sorted(tuple(int(x) for x in m) for m in merges)),
            dict(special_tokens or {}),
            bool(whole_token_shortcut),
            bool(prefix_space),
        )


def build_vocab(tables: BPETables) -> dict[int, bytes]:
    """id -> bytes for every byte, merge and special token; inconsistent tables raise ``ValueError``.

    Usually a merge only uses ids defined before it, but a tiktoken vocabulary
    may cut a token into two *later* tokens, so the merges are resolved in
    passes until nothing is pending.
    """
    vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(tables.byte_ids)}
    pending = list(tables.merges)
    while pending:
        waiting = []
        for merge in pending:
            _, a, b, new = merge
            if a not in vocab or b not in vocab:
                waiting.append(merge)
                continue
            merged = vocab[a] + vocab[b]
            if vocab.setdefault(new, merged) != merged:
                raise ValueError(f"merge ({a}, {b}) -> {new}: id {new} already stands for {vocab[new]!r}")
        if len(waiting) == len(pending):
            _, a, b, new = waiting[0]
            raise ValueError(f"merge ({a}, {b}) -> {new}: uses an id that no merge or byte defines")
        pending = waiting
    for name, i in tables.special_tokens.items():
        if i in vocab:
            raise ValueError(f"special token {name!r}: id {i} is already the token {vocab[i]!r}")
        vocab[i] = name.encode("utf-8")
    return vocab


def render_token(token: bytes) -> str:
    """Printable form of a token's bytes: text where it is valid UTF-8, ``\\xNN`` elsewhere."""
    text = token.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def json_dumps(obj) -> str:
    """JSON on one line, non-ASCII kept readable."""
    return json.dumps(obj, ensure_ascii=False)


# ---------------------------------------------------------------------------
# minitx's own format
# ---------------------------------------------------------------------------
def dumps_tables(tables: BPETables) -> str:
    """The ``minitx-bpe 1`` text of ``tables``."""
    options = {"prefix_space": tables.prefix_space, "whole_token_shortcut": tables.whole_token_shortcut}
    lines = [
        f"{MAGIC} {VERSION}",
        f"pattern {json_dumps(tables.pattern)}",
        f"options {json.dumps(options, sort_keys=True)}",
        "bytes " + " ".join(map(str, tables.byte_ids)),
        f"specials {len(tables.special_tokens)}",
    ]
    lines += [f"{i} {json_dumps(s)}" for s, i in sorted(tables.special_tokens.items(), key=lambda kv: kv[1])]
    lines.append(f"merges {len(tables.merges)}")
    lines += [f"{rank} {a} {b} {new}" for rank, a, b, new in tables.merges]
    return "\n".join(lines) + "\n"


def vocab_listing(tables: BPETables) -> str:
    """One line per id: ``id [token]`` for bytes, ``id [left][right] -> [token]`` for merges."""
    vocab = build_vocab(tables)
    specials = set(tables.special_tokens.values())
    made_from: dict[int, tuple[int, int]] = {}
    for _, a, b, new in tables.merges:
        made_from.setdefault(new, (a, b))
    lines = []
    for i in sorted(vocab):
        token = f"[{render_token(vocab[i])}]"
        if i in specials:
            lines.append(f"{i} {token} (special)")
        elif i in made_from:
            a, b = made_from[i]
            lines.append(f"{i} [{render_token(vocab[a])}][{render_token(vocab[b])}] -> {token}")
        else:
            lines.append(f"{i} {token}")
    return "\n".join(lines) + "\n"


def loads_tables(text: str, source: str = "<string>") -> BPETables:
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
    try:
        return BPETables.make(
            pattern,
            byte_ids,
            merges,
            specials,
            whole_token_shortcut=bool(options.get("whole_token_shortcut", True)),
            prefix_space=bool(options.get("prefix_space", False)),
        )
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def read_tables(path: str | os.PathLike) -> BPETables:
    """:func:`loads_tables` of a file; a file that is not UTF-8 raises ``ValueError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a minitx tokenizer file (not UTF-8 text)") from None
    return loads_tables(text, source=str(path))


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


def tables_from_ranks(
    ranks: Mapping[bytes, int], pattern: str = GPT4_SPLIT_PATTERN, special_tokens: Mapping[str, int] | None = None
) -> BPETables:
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
    return BPETables.make(pattern, byte_ids, merges, special_tokens, whole_token_shortcut=True)


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


def read_huggingface(path: str | os.PathLike) -> BPETables:
    """The tables of a Hugging Face byte-level BPE ``tokenizer.json``."""
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
    # Hugging Face encodes a chunk that is a whole token directly only with ignore_merges.
    return BPETables.make(
        pattern,
        byte_ids,
        merges,
        specials,
        whole_token_shortcut=bool(model.get("ignore_merges")),
        prefix_space=prefix_space,
    )
