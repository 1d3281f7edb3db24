"""Instruction/response pairs of five kinds, for instruction tuning and for prompting a base model.

Each example is an *instruction* (what to do), an *input* and the
*response* a helpful model should write. They are laid out with
:func:`minitx.prompt.build_prompt`, the same layout the prompting lessons
use, so a base model can be asked zero-shot or few-shot and a tuned model
is asked the very same prompt::

    Name the people and places.                      instruction
    Sentence: maria lopez visited oslo on monday     input
    Answer: people: maria lopez; places: oslo        output indicator + response

The five tasks (the course's list), with how each is scored on held-out
examples (:func:`score`, 1 or 0 per example; the score of a task is the mean):

=============  ===============================================  ===================
task           response                                         score
=============  ===============================================  ===================
sentiment      ``positive`` / ``negative`` for a review          accuracy: the label
ner            ``people: ...; places: ...`` in order of          exact match
               appearance (``none`` when there are none)
summarise      one sentence: who does what, where, on which      exact match
               day, after the dialogue settles it
translate      a noun phrase in Tolan (:mod:`.translation`:      exact match
               gendered articles, adjectives after the noun)
python         an expression over the table's columns            execution match:
                                                                 its value on the
                                                                 example's table
=============  ===============================================  ===================

*Exact match* compares the completion (up to the first newline) with the
reference string (after the one space the layout puts before every answer). *Execution match* runs the
completion with :func:`minitx.datasets.expressions.evaluate` (an ``ast``
whitelist, never ``eval``) on the example's own generated table and
compares the value with the reference expression's, so
``sum(price) / len(price)`` and ``sum(price) / len(qty)`` both count.

Held-out means new inputs: a test example's input never occurs in
training. Vocabularies come from the other generators (aspects and
sentiment words of :mod:`.reviews_heldout`, names and templates of
:mod:`.ner`, Tolan of :mod:`.translation`), all lower case.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..prompt import PromptTemplate, build_prompt
from .expressions import execution_match
from .ner import FIRST, entity_mentions, sentence
from .reviews_heldout import TRAIN_WORDS, review
from .sentiment import SENTIMENT_LABELS, choice
from .translation import noun_phrase

TASKS = ("sentiment", "ner", "summarise", "translate", "python")
METRICS = {"sentiment": "accuracy", "ner": "exact match", "summarise": "exact match", "translate": "exact match",
           "python": "execution match"}
#: The end of every response: generation stops there, and the tuned model learns to write it.
END = "\n"

TEMPLATES = {
    "sentiment": PromptTemplate("Is the review positive or negative?", "Review:", "Answer:", name="sentiment"),
    "ner": PromptTemplate("Name the people and places.", "Sentence:", "Answer:", name="ner"),
    "summarise": PromptTemplate("Summarise the dialogue.", "Dialogue:", "Summary:", name="summarise"),
    "translate": PromptTemplate("Translate into Tolan.", "English:", "Tolan:", name="translate"),
    "python": PromptTemplate("Write a Python expression.", "Task:", "Code:", name="python"),
}


@dataclass(frozen=True)
class Instruction:
    """One example: ``task``, ``input``, reference ``output``; ``table`` for the python task."""

    task: str
    input: str
    output: str
    table: dict = field(default_factory=dict, compare=False)



# ---- the generators, one per task -------------------------------------------
def sentiment_example(rng) -> Instruction:
    label = int(rng.integers(2))
    return Instruction("sentiment", review(rng, label, TRAIN_WORDS), SENTIMENT_LABELS[label])


def ner_example(rng) -> Instruction:
    tokens, tags = sentence(rng)
    mentions = entity_mentions(tokens, tags)  # in order of appearance
    people = [text for kind, text in mentions if kind == "PER"]
    places = [text for kind, text in mentions if kind == "LOC"]
    answer = f"people: {', '.join(people) or 'none'}; places: {', '.join(places) or 'none'}"
    return Instruction("ner", " ".join(tokens), answer)


ACTIVITIES = ("have lunch", "see a film", "go running", "play chess", "visit the museum", "go shopping")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TOWNS = ("paris", "cairo", "lima", "oslo", "delhi", "hanoi", "berlin", "dublin")  # one word each


def summarise_example(rng) -> Instruction:
    """A two- or three-turn dialogue that settles an activity, a town and a day; the summary states them.

    The second speaker either agrees, moves the day, or moves the town, so
    the summary must take each fact from the turn that settles it.
    """
    a, b = (FIRST[i] for i in rng.choice(len(FIRST), 2, replace=False))
    act, town, day = choice(rng, ACTIVITIES), choice(rng, TOWNS), choice(rng, DAYS)
    ask = f"{a}: shall we {act} in {town} on {day}?"
    kind = int(rng.integers(3))
    if kind == 0:
        reply = f"{b}: yes, see you then."
    elif kind == 1:
        day = choice(rng, [d for d in DAYS if d != day])
        reply = f"{b}: i am busy, what about {day}? {a}: fine."
    else:
        town = choice(rng, [t for t in TOWNS if t != town])
        reply = f"{b}: yes, but in {town}. {a}: ok."
    return Instruction("summarise", f"{ask} {reply}", f"{a} and {b} {act} in {town} on {day}.")


def translate_example(rng) -> Instruction:
    english, tolan, _ = noun_phrase(rng, max_adjectives=1)
    return Instruction("translate", " ".join(english), " ".join(tolan))


COLUMNS = ("price", "qty", "weight", "age", "score", "height", "cost", "rating", "speed", "width")
#: (what the task says, the reference expression); ``{c}`` and ``{d}`` are column names.
DATA_TASKS = (
    ("the mean of column {c}", "sum({c}) / len({c})"),
    ("the total of column {c}", "sum({c})"),
    ("the largest {c}", "max({c})"),
    ("the smallest {c}", "min({c})"),
    ("the range of column {c}", "max({c}) - min({c})"),
    ("the number of rows", "len({c})"),
    ("the total of {c} plus the total of {d}", "sum({c}) + sum({d})"),
)


def python_example(rng) -> Instruction:
    """A data task over three named columns; the table has 4-8 rows of distinct integers per column."""
    cols = [COLUMNS[i] for i in rng.choice(len(COLUMNS), 3, replace=False)]
    n_rows = int(rng.integers(4, 9))
    table = {c: [int(v) for v in rng.choice(np.arange(1, 100), n_rows, replace=False)] for c in cols}
    what, expression = choice(rng, DATA_TASKS)
    c, d = cols[0], cols[1]
    text = f"columns {', '.join(sorted(cols))}; {what.format(c=c, d=d)}"
    return Instruction("python", text, expression.format(c=c, d=d), table)


GENERATORS = {"sentiment": sentiment_example, "ner": ner_example, "summarise": summarise_example,
              "translate": translate_example, "python": python_example}


def make_instructions(n_train: int = 300, n_test: int = 50, seed: int = 0, *, tasks=TASKS) -> dict:
    """``{"train"|"test": {task: [Instruction, ...]}}``, ``n_train`` / ``n_test`` per task.

    Test inputs never occur in training (a repeat is drawn again), so the
    score is on instructions the tuned model has not seen. Deterministic for
    a seed.
    """
    out = {"train": {}, "test": {}}
    for t, task in enumerate(tasks):
        if task not in GENERATORS:
            raise ValueError(f"tasks: got {task!r}, expected names from {TASKS}")
        rng = np.random.default_rng([seed, 17, t])
        seen = set()
        for split, n in (("train", n_train), ("test", n_test)):
            rows = []
            for _ in range(100 * n + 100):  # the generators have far more inputs than needed; never loops forever
                if len(rows) == n:
                    break
                ex = GENERATORS[task](rng)
                if split == "test" and ex.input in seen:
                    continue
                seen.add(ex.input)
                rows.append(ex)
            if len(rows) < n:
                raise ValueError(f"task {task!r}: only {len(rows)} distinct held-out inputs, expected {n}")
            out[split][task] = rows
    return out


# ---- prompts, scores and the tuning sequences ------------------------------
def prompt_for(ex: Instruction, examples=()):
    """The :class:`~minitx.prompt.Prompt` that asks for ``ex`` (``examples``: Instructions shown first)."""
    return build_prompt(TEMPLATES[ex.task], ex.input, [(e.input, e.output) for e in examples])


def response_text(ex: Instruction) -> str:
    """What the model should write after the prompt: a space, the output, END."""
    return " " + ex.output + END


def completion_answer(completion: str) -> str:
    """What a completion answers: everything before the first :data:`END`."""
    return completion.split(END, 1)[0]


def score(ex: Instruction, completion: str) -> float:
    """1.0 when ``completion`` answers ``ex`` (the task's metric, see the module docs), else 0.0.

    Exact match is strict: the completion up to END must be ``" " + output``
    (the space the prompt's layout puts after the output indicator), so it
    says the same as checking every generated token.
    """
    answer = completion_answer(completion)
    if ex.task == "python":
        return float(execution_match(answer, ex.output, ex.table))
    return float(answer == " " + ex.output)


def tuning_sequence(ex: Instruction, tokenizer) -> tuple[list[int], list[int]]:
    """``(ids, targets)`` of the zero-shot prompt followed by `` response`` + END; the prompt masked out.

    The model reads ``ids[:-1]`` and is trained to predict ``ids[1:]``; a
    target of -100 (``ignore_index``) contributes nothing to the loss, so
    only the response (and its END) is learned, never the prompt::

        text     Review: great plot Answer:  positive⏎
        targets  -100 ... -100 (prompt)      p o s i t i v e ⏎
    """
    prompt = tokenizer.encode(prompt_for(ex).text)
    response = tokenizer.encode(response_text(ex))
    ids = prompt + response
    targets = [-100] * len(prompt) + response  # aligned with ids; shifted by one below
    return ids[:-1], targets[1:]


def tuning_arrays(examples, tokenizer, window: int, *, pad_id: int = 0):
    """Right-padded ``(x [N, T], y [N, T], lengths [N])`` of :func:`tuning_sequence` (padding targets -100).

    Raises ValueError naming the example when one is longer than ``window``.
    """
    rows = [tuning_sequence(ex, tokenizer) for ex in examples]
    for ex, (ids, _) in zip(examples, rows):
        if len(ids) > window:
            raise ValueError(f"{ex.task} example {ex.input!r}: {len(ids)} tokens, expected at most the window "
                             f"{window}")
    lengths = np.array([len(ids) for ids, _ in rows])
    T = int(lengths.max())
    x = np.full((len(rows), T), pad_id, dtype=np.int64)  # (N, T)
    y = np.full((len(rows), T), -100, dtype=np.int64)  # (N, T) padding is never a target
    for i, (ids, targets) in enumerate(rows):
        x[i, : len(ids)], y[i, : len(targets)] = ids, targets
    return x, y, lengths


__all__ = ["END", "GENERATORS", "Instruction", "METRICS", "TASKS", "TEMPLATES", "completion_answer",
           "make_instructions", "prompt_for", "response_text", "score", "tuning_arrays", "tuning_sequence"]
