"""``minitx prompt``: show the prompt a model would see, its token count and the context window.

    minitx prompt --checkpoint .cache/icl/RUN --template sentiment \\
        --example "great plot lovely. => tiger" --example "dull cast boring. => lemon" \\
        --query "superb film warm."

prints the prompt exactly as :func:`minitx.prompt.build_prompt` lays it out,
then ``24 tokens of a 95-token context window (71 left for the completion)``.
The flags are the ones ``minitx generate`` takes (:func:`~minitx.cli.options.add_prompt_options`),
so what this shows is what ``generate`` feeds the model. Without
``--checkpoint`` the tokens are characters and ``--window`` gives the window.
``--json`` prints one object: ``prompt``, ``ids``, ``n_tokens``, ``window``,
``shots``, ``dropped_examples``, ``truncated_tokens``.
"""
from __future__ import annotations

import json

from .errors import UsageError
from .options import add_prompt_options, resolve_prompt


def add_parser(sub) -> None:
    p = sub.add_parser("prompt", help="build a prompt from parts and check it against a model's context window",
                       description="Show a prompt (plain, or instruction + examples + query laid out by a template), "
                                   "its token count and the model's context window.")
    p.add_argument("--checkpoint", metavar="DIR", default=None,
                   help="a minitx run folder (or its ckpt/) or a Hugging Face folder, for its tokenizer and window "
                        "(default: none; tokens are then characters)")
    p.add_argument("--window", type=int, default=None,
                   help="the context window in tokens (default: the checkpoint's block_size; required without one)")
    add_prompt_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    p.set_defaults(func=run_prompt)


class _Characters:
    """Without a model: one token per character (what a character-level GPT would see)."""

    vocab_size = None

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def _tokenizer_and_window(args):
    if args.checkpoint is None:
        if args.window is None:
            raise UsageError("--window: missing, expected the context window in tokens (or --checkpoint, whose "
                             "block_size it is)")
        return _Characters(), "characters", args.window
    from .pretrained import is_hf_folder  # noqa: PLC0415

    if is_hf_folder(args.checkpoint):
        from ..models.gpt import GPT  # noqa: PLC0415
        from ..pretrained import from_pretrained  # noqa: PLC0415

        model, tokenizer = from_pretrained(args.checkpoint)
        if tokenizer is None:
            raise UsageError(f"--checkpoint {args.checkpoint}: no tokenizer.json or vocab.txt, expected a tokenizer "
                             "beside the model")
        window = model.config.block_size if isinstance(model, GPT) else getattr(model.config, "max_len", None)
    else:
        from ..models.gpt import GPTConfig  # noqa: PLC0415
        from ..train.lm import read_checkpoint, tokenizer_from_meta  # noqa: PLC0415

        meta = read_checkpoint(args.checkpoint)[2]
        tokenizer = tokenizer_from_meta(meta.get("tokenizer"))
        window = GPTConfig.from_dict(meta["config"]).block_size
    if args.window is not None:
        window = args.window
    return tokenizer, type(tokenizer).__name__, window


def run_prompt(args) -> int:
    if args.window is not None and args.window < 1:
        raise UsageError(f"--window: got {args.window}, expected a positive number of tokens")
    tokenizer, kind, window = _tokenizer_and_window(args)
    prompt = resolve_prompt(args, tokenizer, window)
    if args.json:
        print(json.dumps({"prompt": prompt.text, "ids": [int(i) for i in prompt.ids], "n_tokens": prompt.n_tokens,
                          "window": window, "shots": prompt.shots if prompt.query is not None else None,
                          "dropped_examples": prompt.dropped_examples, "truncated_tokens": prompt.truncated_tokens}))
        return 0
    shots = "" if prompt.query is None else f", {prompt.shots}-shot ({prompt.template.name} template)"
    print(f"--- prompt{shots} ---")
    print(prompt.text)
    print("---")
    print(f"{prompt.n_tokens} tokens ({kind}) of a {window}-token context window "
          f"({window - prompt.n_tokens} left for the completion)")
    if prompt.dropped_examples:
        print(f"--overflow drop-examples: dropped the {prompt.dropped_examples} oldest example(s) to fit")
    if prompt.truncated_tokens:
        print(f"--overflow truncate-left: cut the first {prompt.truncated_tokens} tokens to fit")
    return 0


__all__ = ["add_parser", "run_prompt"]
