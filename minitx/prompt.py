"""Prompts: the text a model is asked to continue, built from parts and fitted to its context window.

A language model only ever *continues* text. To make it do a task we write
the start of a document whose natural continuation is the answer: the
**prompt**. The continuation the model writes is the **completion**. Both
must fit in the **context window** (``block_size``): the most tokens the
model can see at once; whatever falls outside it does not exist for the
model.

A prompt has four parts (the course's names)::

    Classify each review as apple or river.       instruction
    Review: great plot lovely. Sentiment: apple   example 1 (input, output)
    Review: dull cast boring. Sentiment: river    example 2
    Review: superb film warm. Sentiment:          query input + output indicator

With no examples it is a *zero-shot* prompt, with one *one-shot*, with
several *few-shot* (Brown et al., 2020): the examples show the task instead
of describing it, and the model is expected to continue the pattern.

**Templates are data.** A :class:`PromptTemplate` is a handful of strings
(JSON-able, see :meth:`PromptTemplate.to_dict`): the instruction, the input
label and the output indicator, and two format strings that lay out an
example and the query from named fields. Changing the wording of a prompt
(prompt engineering) is then editing data, not code::

    >>> t = PromptTemplate(instruction="Translate to French.", input_label="English:", output_indicator="French:")
    >>> print(build_prompt(t, "cheese", examples=[("cat", "chat")]).text)
    Translate to French.
    English: cat French: chat
    English: cheese French:

**Naming the answers.** An instruction may name the candidate answers, as
people write "Classify each review as positive or negative.": the field
``{labels}`` in an instruction is filled with the ``labels`` given to
:func:`build_prompt`, joined by the template's ``label_join``::

    >>> t = PromptTemplate(instruction="Classify each review as {labels}.", input_label="Review:",
    ...                    output_indicator="Sentiment:")
    >>> print(build_prompt(t, "a warm film", labels=("good", "bad")).text)
    Classify each review as good or bad.
    Review: a warm film Sentiment:

Then even a zero-shot prompt says what the answer can be, and one example
is enough to tell which candidate is which: the other one belongs to the
other class. (The in-context-learning models of :mod:`minitx.datasets.icl`
are not trained on such prompts; ``benchmarks/icl.md`` says what training
them on it did.)

**The window check.** :func:`fit_prompt` encodes the prompt and compares its
token count with the window. The ``overflow`` policy says what happens when
it does not fit: ``"error"`` (the default) raises :class:`PromptTooLong`
naming both counts; ``"drop-examples"`` removes examples, oldest first
(those farthest from the query), until it fits; ``"truncate-left"`` keeps
the last ``window`` tokens (what a sliding window does: the instruction
goes first). The two silent policies report what they removed, so nothing
is lost without a trace.
"""
from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

#: What :func:`fit_prompt` may do with a prompt longer than the window.
OVERFLOW_POLICIES = ("error", "drop-examples", "truncate-left")


class PromptTooLong(ValueError):
    """The prompt has more tokens than the context window holds (and the policy could not fix it)."""


@dataclass(frozen=True)
class PromptTemplate:
    """How a prompt's parts are worded and laid out; every field is a plain string.

    ``example_format`` and ``query_format`` are :meth:`str.format` strings
    over the fields ``{input_label}``, ``{input}``, ``{output_indicator}``
    and (examples only) ``{output}``. ``separator`` joins the instruction,
    the examples and the query. An empty ``instruction`` is left out.
    ``instruction`` is itself a format string whose one optional field,
    ``{labels}``, names the candidate answers, joined by ``label_join``
    (write ``{{`` and ``}}`` for literal braces).
    """

    instruction: str = ""
    input_label: str = "Input:"
    output_indicator: str = "Output:"
    example_format: str = "{input_label} {input} {output_indicator} {output}"
    query_format: str = "{input_label} {input} {output_indicator}"
    separator: str = "\n"
    label_join: str = " or "
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        for f in fields(self):
            if not isinstance(getattr(self, f.name), str):
                raise ValueError(f"PromptTemplate {f.name}: got {type(getattr(self, f.name)).__name__}, expected str")
        for fmt_name, allowed, needed in (("example_format", {"input_label", "input", "output_indicator", "output"},
                                           {"input", "output"}),
                                          ("query_format", {"input_label", "input", "output_indicator"}, {"input"}),
                                          ("instruction", {"labels"}, set())):
            names = format_fields(getattr(self, fmt_name), f"PromptTemplate {fmt_name}")
            if not names <= allowed or not needed <= names:
                raise ValueError(f"PromptTemplate {fmt_name}: got fields {sorted(names)} in "
                                 f"{getattr(self, fmt_name)!r}, expected {sorted(needed)} and optionally "
                                 f"{sorted(allowed - needed)}")

    def format_instruction(self, instruction: str, labels=None) -> str:
        """``instruction`` (this template's, or one given in its place) with ``{labels}`` filled in.

        ``labels`` must be given exactly when the instruction names
        ``{labels}``: an instruction that names no candidates, given some,
        would drop them without a trace.
        """
        names = format_fields(instruction, "instruction")
        if not names <= {"labels"}:
            raise ValueError(f"instruction: got fields {sorted(names)} in {instruction!r}, expected only {{labels}} "
                             "(write {{ and }} for literal braces)")
        if labels is None:
            if names:
                raise ValueError(f"labels: missing, expected the candidate answers that the instruction "
                                 f"{instruction!r} names")
            return instruction.format()
        if (not isinstance(labels, (tuple, list)) or len(labels) < 2
                or not all(isinstance(w, str) and w for w in labels) or len(set(labels)) != len(labels)):
            raise ValueError(f"labels: got {labels!r}, expected two or more distinct non-empty strings")
        if not names:
            raise ValueError(f"labels: got {list(labels)}, but the instruction {instruction!r} has no {{labels}} "
                             "field to name them in")
        return instruction.format(labels=self.label_join.join(labels))

    def format_example(self, input: str, output: str) -> str:
        return self.example_format.format(input_label=self.input_label, input=input,
                                          output_indicator=self.output_indicator, output=output)

    def format_query(self, input: str) -> str:
        return self.query_format.format(input_label=self.input_label, input=input,
                                        output_indicator=self.output_indicator)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d, *, source: str = "template") -> "PromptTemplate":
        """Inverse of :meth:`to_dict`; an unknown key is an error naming it (a typo must not pass silently)."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}: got {type(d).__name__}, expected a JSON object with template fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field {unknown[0]!r}, expected some of {sorted(known)}")
        return cls(**d)


def format_fields(fmt: str, name: str) -> set:
    """The field names of the :meth:`str.format` string ``fmt`` (``name`` says whose it is in an error)."""
    try:
        return {n for _, n, _, _ in string.Formatter().parse(fmt) if n is not None}
    except ValueError as exc:
        raise ValueError(f"{name}: {fmt!r} is not a format string ({exc})") from None


#: Built-in templates, by name. ``review-label`` is the in-context-learning task of
#: :mod:`minitx.datasets.icl` (its models are trained on exactly this layout).
TEMPLATES: dict[str, PromptTemplate] = {
    "sentiment": PromptTemplate(instruction="Classify each review.", input_label="Review:",
                                output_indicator="Sentiment:", name="sentiment"),
    # the in-context-learning task's layout: the label right after the review's last word (see minitx.datasets.icl)
    "review-label": PromptTemplate(instruction="Classify each review as {labels}.", input_label="Review:",
                                   output_indicator="",
                                   example_format="{input_label} {input} {output}", query_format="{input_label} {input}",
                                   name="review-label"),
    "qa": PromptTemplate(instruction="Answer each question.", input_label="Q:", output_indicator="A:", name="qa"),
    "plain": PromptTemplate(name="plain"),
}


def load_template(spec) -> PromptTemplate:
    """A template from a built-in name, a ``.json`` file path, a dict, or a template (returned as is)."""
    if isinstance(spec, PromptTemplate):
        return spec
    if isinstance(spec, dict):
        return PromptTemplate.from_dict(spec)
    if not isinstance(spec, str):
        raise ValueError(f"template: got {type(spec).__name__}, expected a name, a .json path or a dict")
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    path = Path(spec)
    if path.suffix == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"template {spec!r}: no such file, expected a built-in name "
                             f"({', '.join(TEMPLATES)}) or a JSON file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"template {spec!r}: not valid JSON ({exc}); expected an object of template fields") \
                from None
        return PromptTemplate.from_dict({"name": path.stem, **data} if isinstance(data, dict) else data,
                                        source=f"template {spec!r}")
    raise ValueError(f"template {spec!r}: unknown name, expected one of {', '.join(TEMPLATES)} or a .json file")


@dataclass
class Prompt:
    """A built prompt: its text and the parts it was built from (``examples`` as ``(input, output)`` pairs).

    ``instruction`` is the text the prompt starts with (``{labels}`` filled
    in from ``labels``, the candidate answers it names, or ``None``).
    After :func:`fit_prompt`: ``ids`` (what the model sees), ``window``, and
    what the overflow policy removed (``dropped_examples``, ``truncated_tokens``).
    """

    text: str
    template: PromptTemplate
    query: str | None
    examples: list = field(default_factory=list)
    instruction: str = ""
    labels: tuple | None = None
    ids: list | None = None
    window: int | None = None
    dropped_examples: int = 0
    truncated_tokens: int = 0

    @property
    def n_tokens(self) -> int | None:
        return None if self.ids is None else len(self.ids)

    @property
    def shots(self) -> int:
        """k in "k-shot": the examples the prompt holds."""
        return len(self.examples)


def _check_text(name: str, value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: got {type(value).__name__}, expected str")
    return value


def build_prompt(template, query: str, examples=(), *, instruction: str | None = None,
                 labels=None) -> Prompt:
    """Lay out ``instruction``, ``examples`` (``(input, output)`` pairs) and ``query`` with ``template``.

    ``instruction`` overrides the template's (``""`` leaves it out); either
    may name the candidate answers with ``{labels}``, filled from ``labels``
    (a sequence of two or more words, in the order to name them). The
    text ends with the output indicator and no trailing space, so the
    model's first token is the answer (a word-level or BPE tokenizer puts
    the space before the word into that token, or between tokens).
    """
    template = load_template(template)
    _check_text("query", query)
    instruction = template.instruction if instruction is None else _check_text("instruction", instruction)
    text = template.format_instruction(instruction, labels)  # checks labels
    labels = None if labels is None else tuple(labels)
    pairs = []
    for i, ex in enumerate(examples):
        if isinstance(ex, dict) and set(ex) == {"input", "output"}:
            ex = (ex["input"], ex["output"])
        if not (isinstance(ex, (tuple, list)) and len(ex) == 2 and all(isinstance(s, str) for s in ex)):
            raise ValueError(f"examples[{i}]: got {ex!r}, expected an (input, output) pair of strings")
        pairs.append((ex[0], ex[1]))
    return _laid_out(template, text, pairs, query, labels)


def _laid_out(template: PromptTemplate, instruction: str, pairs: list, query: str, labels) -> Prompt:
    """The :class:`Prompt` of an instruction already filled in, its examples and its query."""
    parts = ([instruction] if instruction else []) + [template.format_example(a, b) for a, b in pairs]
    parts.append(template.format_query(query))
    return Prompt(template.separator.join(parts), template, query, list(pairs), instruction, labels)


def build_prompt_text(prompt: Prompt, examples) -> str:
    """``prompt``'s text with ``examples`` in place of its own (how drop-examples rebuilds it)."""
    return _laid_out(prompt.template, prompt.instruction, list(examples), prompt.query, prompt.labels).text


def fit_prompt(prompt, tokenizer, window: int, *, overflow: str = "error", reserve: int = 0) -> Prompt:
    """Encode ``prompt`` and make it fit ``window - reserve`` tokens, as ``overflow`` says.

    ``prompt``: a :class:`Prompt`, or plain text (then only ``error`` and
    ``truncate-left`` apply: plain text has no examples to drop).
    ``reserve``: tokens to leave free for the completion. Returns the
    :class:`Prompt` with ``ids`` set. Raises :class:`PromptTooLong` (a
    ``ValueError``) naming the token count and the window when the prompt
    does not fit and the policy cannot make it.
    """
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow: got {overflow!r}, expected one of {', '.join(OVERFLOW_POLICIES)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: got {window!r}, expected a positive integer (the context window in tokens)")
    if isinstance(reserve, bool) or not isinstance(reserve, int) or not 0 <= reserve < window:
        raise ValueError(f"reserve: got {reserve!r}, expected an integer in [0, window={window})")
    if isinstance(prompt, str):
        prompt = Prompt(prompt, TEMPLATES["plain"], None)
    if not isinstance(prompt, Prompt):
        raise ValueError(f"prompt: got {type(prompt).__name__}, expected a Prompt or str")
    limit = window - reserve
    where = f"the context window holds {window}" + (f" ({reserve} kept free for the completion)" if reserve else "")
    ids = list(tokenizer.encode(prompt.text))
    if not ids:
        raise ValueError("prompt: encodes to 0 tokens, expected at least one")
    first = len(ids)
    if len(ids) <= limit:
        return _fitted(prompt, ids, window)
    if overflow == "error":
        raise PromptTooLong(f"prompt: {len(ids)} tokens, but {where}; expected at most {limit} tokens: shorten it, "
                            "or pass overflow='drop-examples' (--overflow drop-examples) or 'truncate-left'")
    if overflow == "truncate-left":
        fitted = _fitted(prompt, ids[-limit:], window)
        fitted.text = tokenizer.decode(fitted.ids)
        fitted.truncated_tokens = len(ids) - limit
        return fitted
    # drop-examples: oldest first, until it fits (a loop over examples, at most their number of encodings)
    if prompt.query is None:
        raise PromptTooLong(f"prompt: {len(ids)} tokens, but {where}; plain text has no examples to drop, expected "
                            "a prompt built from parts, or overflow='truncate-left'")
    kept = list(prompt.examples)
    while len(ids) > limit and kept:
        kept.pop(0)
        ids = list(tokenizer.encode(build_prompt_text(prompt, kept)))
    if len(ids) > limit:
        raise PromptTooLong(f"prompt: {first} tokens, and still {len(ids)} with all {len(prompt.examples)} examples "
                            f"dropped, but {where}; expected a shorter instruction or query")
    fitted = _fitted(_laid_out(prompt.template, prompt.instruction, kept, prompt.query, prompt.labels), ids, window)
    fitted.dropped_examples = len(prompt.examples) - len(kept)
    return fitted


def _fitted(prompt: Prompt, ids: list, window: int) -> Prompt:
    out = Prompt(prompt.text, prompt.template, prompt.query, list(prompt.examples), prompt.instruction, prompt.labels)
    out.ids, out.window = ids, window
    return out


def parse_example(spec: str, *, name: str = "example") -> tuple[str, str]:
    """``"great plot => apple" -> ("great plot", "apple")``: the command line's INPUT=>OUTPUT form."""
    if not isinstance(spec, str) or "=>" not in spec:
        raise ValueError(f"{name}: got {spec!r}, expected INPUT=>OUTPUT (e.g. 'great plot lovely. => apple')")
    left, right = spec.rsplit("=>", 1)
    left, right = left.strip(), right.strip()
    if not left or not right:
        raise ValueError(f"{name}: got {spec!r}, expected a non-empty INPUT and OUTPUT around '=>'")
    return left, right


def load_prompt_spec(path) -> dict:
    """A prompt described as JSON: ``{"template", "instruction", "labels", "examples", "query"}`` (all optional).

    ``examples`` is a list of ``[input, output]`` pairs or ``{"input", "output"}`` objects;
    ``template`` a built-in name or an object of template fields; ``labels``
    the list of candidate answers an instruction's ``{labels}`` names.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"prompt file {str(path)!r}: no such file, expected a .json prompt or a text file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"prompt file {str(path)!r}: not valid JSON ({exc}); expected an object with template, "
                         "instruction, labels, examples, query") from None
    allowed = {"template", "instruction", "labels", "examples", "query"}
    if not isinstance(data, dict) or not set(data) <= allowed:
        extra = sorted(set(data) - allowed) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"prompt file {str(path)!r}: got {extra}, expected an object with only {sorted(allowed)}")
    for key in ("examples", "labels"):
        if key in data and not isinstance(data[key], list):
            raise ValueError(f"prompt file {str(path)!r}: {key} is {type(data[key]).__name__}, expected a list")
    return data


__all__ = ["OVERFLOW_POLICIES", "Prompt", "PromptTemplate", "PromptTooLong", "TEMPLATES", "build_prompt",
           "fit_prompt", "format_fields", "load_prompt_spec", "load_template", "parse_example"]
