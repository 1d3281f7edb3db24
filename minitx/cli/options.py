"""Option definitions shared by every command that trains or runs a model.

One flag name per concept, defined once here: ``--d-model`` is the model
width for the GPT and for the encoder tasks alike, ``--block-size`` the
context window, ``--out``/``--resume``/``--overwrite`` the run folder rules,
``--device``/``--backend`` where the maths runs. A command passes its own
*defaults* (the main job's, a task's); the flags default to ``None`` so that
"not given" can be told apart from "given the default value", which is what
``--resume`` needs (a flag given on resume overrides the checkpoint; one not
given keeps the checkpoint's value).
"""
from __future__ import annotations

from .errors import UsageError

#: Model-shape flags: (flag, type, help). The config field each sets is the command's business.
MODEL_FLAGS = (
    ("--n-layer", int, "transformer blocks"),
    ("--n-head", int, "attention heads"),
    ("--d-model", int, "model width (divisible by --n-head)"),
    ("--block-size", int, "context window in tokens"),
    ("--dropout", float, "dropout probability in [0, 1)"),
)
#: Training flags, each a field of :class:`minitx.train.config.TrainConfig` of the same name.
TRAIN_FLAGS = (
    ("--batch-size", int, "sequences per optimizer step (the global batch)"),
    ("--max-iters", int, "training steps"),
    ("--lr", float, "peak learning rate"),
    ("--min-lr", float, "learning rate at the end of the cosine"),
    ("--warmup-iters", int, "linear warmup steps"),
    ("--beta2", float, "AdamW beta2"),
    ("--weight-decay", float, "AdamW decay on 2-D weights"),
    ("--grad-clip", float, "clip the gradient norm to this (0: off)"),
    ("--grad-accum", int, "micro-batches per optimizer step"),
    ("--eval-interval", int, "steps between evaluations and checkpoints"),
    ("--eval-iters", int, "batches per loss estimate"),
    ("--label-smoothing", float, "cross-entropy label smoothing in [0, 1)"),
    ("--seed", int, "seed for initialisation, batches and dropout"),
)
#: The GPU backend ``--device cuda`` uses unless ``--backend`` says otherwise.
DEFAULT_CUDA_BACKEND = "cupy"


def dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _with_default(what: str, value) -> str:
    return what if value is None else f"{what} (default {value})"


def add_model_options(parser, defaults: dict, *, preset_help: str = "named model size") -> None:
    """``--preset`` and the shape flags; ``defaults`` maps flag dest -> the value shown in ``--help``."""
    g = parser.add_argument_group("model")
    g.add_argument("--preset", default=None, help=_with_default(preset_help, defaults.get("preset")))
    for flag, typ, what in MODEL_FLAGS:
        shown = defaults.get(dest(flag), "the preset's")
        g.add_argument(flag, type=typ, default=None, help=f"{what} (default {shown})")


def add_training_options(parser, defaults: dict) -> None:
    """The :class:`TrainConfig` flags plus ``--threads``; defaults shown are ``defaults``' (else TrainConfig's)."""
    from ..train.config import TrainConfig  # noqa: PLC0415

    base = TrainConfig()
    g = parser.add_argument_group("training")
    for flag, typ, what in TRAIN_FLAGS:
        name = dest(flag)
        g.add_argument(flag, type=typ, default=None, help=_with_default(what, defaults.get(name, getattr(base, name))))
    g.add_argument("--threads", type=int, default=None,
                   help="data-parallel replicas in this process, one Python thread each (default: the cores, at "
                        "most 2; 1 per rank under mpiexec)")


def add_run_options(parser, *, out_default: str | None) -> None:
    """The run folder: ``--out``, ``--resume``, ``--overwrite``, ``--no-progress``."""
    g = parser.add_argument_group("run folder")
    if out_default is None:
        g.add_argument("--out", required=True, metavar="DIR", help="output folder: ckpt/, best/, metrics.jsonl, "
                                                                   "loss.png")
    else:
        g.add_argument("--out", default=out_default, metavar="DIR",
                       help=f"output folder: ckpt/, metrics.jsonl, loss.png (default {out_default})")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (only once the new run writes its first checkpoint)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")


def given(args, names) -> dict:
    """The flags among ``names`` that were given on the command line: ``{dest: value}``."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def train_config(args, defaults: dict, checkpoint_train: dict | None = None):
    """A TrainConfig: TrainConfig's defaults < the command's < a resumed checkpoint's < the flags given."""
    from ..train.config import TrainConfig  # noqa: PLC0415

    names = [dest(f) for f, _, _ in TRAIN_FLAGS]
    values = {k: v for k, v in defaults.items() if k in names}
    values.update({k: v for k, v in (checkpoint_train or {}).items() if k in names})
    values.update(given(args, names))
    if values.get("min_lr") == "lr/10":  # a task's default: a tenth of whatever --lr is
        values["min_lr"] = values["lr"] / 10
    return TrainConfig(**values)


# --------------------------------------------------------------------------
# fine-tuning: LoRA settings, and adapters for the commands that use a model
# --------------------------------------------------------------------------
def add_lora_options(parser) -> None:
    """``--rank``, ``--alpha``, ``--targets`` (used with ``--method lora``)."""
    g = parser.add_argument_group("LoRA (--method lora)")
    g.add_argument("--rank", type=int, default=8, help="rank r of each adapter (default 8)")
    g.add_argument("--alpha", type=float, default=16.0, help="scale alpha; the update is (alpha/r) A B (default 16)")
    g.add_argument("--targets", default=None, metavar="PATTERN",
                   help="fnmatch pattern(s) over module names, comma-separated, e.g. '*attn.qkv,*attn.proj' "
                        "(default '*blocks.*': every Linear in the transformer blocks); a GPT's token embedding "
                        "'wte' (= its tied LM head) takes an adapter too, e.g. 'wte,*blocks.*'")
    g.add_argument("--rank-pattern", default=None, metavar="PATTERN=R",
                   help="other ranks for some modules, comma-separated, e.g. '*attn.qkv=8,*ff.*=2' (each keeps "
                        "the multiplier alpha/rank: its alpha grows with its rank; default: --rank everywhere)")
    g.add_argument("--train-norms", action="store_true",
                   help="also train every LayerNorm/RMSNorm weight and bias beside the adapters (saved with them)")


def lora_targets(args):
    """``--targets`` as the pattern list apply_lora takes (None: the default)."""
    if args.targets is None:
        return None
    patterns = [p.strip() for p in args.targets.split(",")]
    if not all(patterns):
        raise UsageError(f"--targets {args.targets!r}: an empty pattern, expected comma-separated fnmatch patterns")
    return patterns


def lora_rank_pattern(args) -> dict | None:
    """``--rank-pattern 'P=R,P=R'`` as the ``{pattern: rank}`` apply_lora takes (None when not given)."""
    if args.rank_pattern is None:
        return None
    out = {}
    for item in args.rank_pattern.split(","):
        pattern, sep, rank = item.strip().rpartition("=")
        if not sep or not pattern or not rank.strip().isdigit() or int(rank) < 1:
            raise UsageError(f"--rank-pattern {args.rank_pattern!r}: {item.strip()!r} is not PATTERN=R, expected "
                             "comma-separated fnmatch patterns with a rank >= 1 each, e.g. '*attn.qkv=8'")
        out[pattern.strip()] = int(rank)
    return out


def add_adapter_option(parser) -> None:
    """``--adapter DIR``: a LoRA adapter (``minitx finetune --method lora``) loaded onto ``--checkpoint``."""
    parser.add_argument("--adapter", default=None, metavar="DIR",
                        help="a LoRA adapter folder (adapter.json + adapter.safetensors, written by minitx finetune) "
                             "to load onto --checkpoint, its base (default: none; a finetune run folder or an "
                             "adapter folder given as --checkpoint is recognised by itself)")


def load_finetuned_or_none(args):
    """:func:`minitx.finetune.models.load_for_use` for ``--checkpoint`` / ``--adapter``; None for a plain model."""
    from ..finetune.models import load_for_use  # noqa: PLC0415

    return load_for_use(args.checkpoint, getattr(args, "adapter", None))


# --------------------------------------------------------------------------
# devices and backends
# --------------------------------------------------------------------------
def add_device_options(parser) -> None:
    g = parser.add_argument_group("device")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to compute (default: cpu); cuda needs an NVIDIA GPU and CuPy")
    g.add_argument("--backend", choices=("numpy", "cupy", "kernels"), default=None,
                   help="numpy on the CPU; on cuda: cupy (default, cuBLAS) or kernels (minitx's CUDA kernels "
                        "for matmul, softmax, LayerNorm, attention)")


def select_device(args) -> tuple[str, str]:
    """Validate ``--device``/``--backend``; returns ``(device, backend)`` without changing anything yet."""
    from ..backend import check_cuda  # noqa: PLC0415

    device, name = args.device, args.backend
    if device == "cpu":
        if name not in (None, "numpy"):
            raise UsageError(f"--backend {name}: runs on the GPU, expected --device cuda with it "
                             "(the CPU backend is numpy)")
        return device, "numpy"
    if name == "numpy":
        raise UsageError("--backend numpy: runs on the CPU, expected cupy or kernels with --device cuda")
    reason = check_cuda()
    if reason is not None:
        raise UsageError(f"--device cuda: no CUDA device visible ({reason}); expected an NVIDIA GPU with CuPy "
                         "installed: pip install minitx[cuda]")
    return device, name or DEFAULT_CUDA_BACKEND


class using_backend:
    """Select a backend for the duration of a command, then restore the previous one."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        from .. import backend  # noqa: PLC0415

        self.previous = backend.get_backend()
        backend.set_backend(self.name)
        return self

    def __exit__(self, *exc):
        from .. import backend  # noqa: PLC0415

        backend.set_backend(self.previous)
        return False


# --------------------------------------------------------------------------
# data parallelism: threads in this process, MPI ranks across processes
# --------------------------------------------------------------------------
def parallel_plan(args, device: str):
    """``(threads, communicator)`` for a training command, checked before anything is read.

    Under ``mpiexec`` every rank is a replica and ``--threads`` defaults to 1
    (each rank already has its core); otherwise threads default to the
    machine's cores, at most 2 (more replicas than cores only adds copies).
    """
    import os  # noqa: PLC0415

    from ..train.parallel import default_communicator  # noqa: PLC0415

    try:
        comm = default_communicator()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if comm.size > 1 and device == "cuda":
        raise UsageError("--device cuda under mpiexec: the MPI communicator all-reduces host (NumPy) arrays; "
                         "expected --device cpu with MPI ranks (a GPU build needs a device communicator such as NCCL)")
    threads = args.threads
    if threads is None:
        threads = 1 if (comm.size > 1 or device == "cuda") else min(2, os.cpu_count() or 1)
    if threads < 1:
        raise UsageError(f"--threads: got {threads}, expected a positive integer")
    if device == "cuda" and threads != 1:
        raise UsageError(f"--threads {threads}: data-parallel threads are a CPU feature, expected 1 (or no "
                         "--threads) with --device cuda")
    return threads, comm


def announce(comm):
    """``print`` on rank 0, silence on the others (they compute, rank 0 talks)."""
    if comm.rank == 0:
        return print
    return lambda *a, **k: None


def interrupted_message(exc, command: str, out) -> str:
    """What to print after Ctrl-C: where the checkpoint went and how to continue."""
    if exc.checkpoint is None:
        return f"interrupted after iteration {exc.iter}; nothing to save yet (no step completed)"
    return (f"interrupted: iteration {exc.iter} saved in {exc.checkpoint}; continue with: "
            f"minitx {command} --out {out} --resume")


# --------------------------------------------------------------------------
# prompts: one mechanism for `minitx prompt` and `minitx generate`
# --------------------------------------------------------------------------
#: The flags that build a prompt from parts (any of them given means "build one").
PROMPT_PART_FLAGS = ("prompt_file", "template", "instruction", "label", "example", "query")


def add_prompt_options(parser, *, prompt_help: str = "the prompt as plain text (default: none)") -> None:
    """``--prompt`` (plain text) or a prompt built from parts (:mod:`minitx.prompt`), and ``--overflow``.

    Both commands that take a prompt call this, and :func:`resolve_prompt`
    turns the flags into the checked token ids, so ``minitx prompt`` shows
    exactly what ``minitx generate`` would feed the model.
    """
    from ..prompt import OVERFLOW_POLICIES, TEMPLATES  # noqa: PLC0415 - a module without NumPy

    g = parser.add_argument_group("prompt", "plain text (--prompt), or parts laid out by a template; every prompt is "
                                            "checked against the model's context window")
    g.add_argument("--prompt", default=None, help=prompt_help)
    g.add_argument("--prompt-file", metavar="FILE", default=None,
                   help="a .json prompt ({template, instruction, examples, query}) or any other file, whose text is "
                        "the prompt as is (default: none)")
    g.add_argument("--template", metavar="NAME|FILE", default=None,
                   help=f"how the parts are worded and laid out: {', '.join(TEMPLATES)}, or a .json file of "
                        "template fields (default plain, or the prompt file's)")
    g.add_argument("--instruction", default=None, help="the instruction line (default: the template's); "
                                                       "{labels} in it names the --label words")
    g.add_argument("--label", action="append", default=None, metavar="WORD",
                   help="a candidate answer, repeatable, in the order the instruction's {labels} names them "
                        "(review-label's instruction needs two; default: none)")
    g.add_argument("--example", action="append", default=None, metavar="INPUT=>OUTPUT",
                   help="a solved example, repeatable, in order; none is zero-shot (default: none)")
    g.add_argument("--query", default=None, help="the input to answer; the prompt ends with the output indicator "
                                                 "(default: none)")
    g.add_argument("--overflow", choices=OVERFLOW_POLICIES, default="error",
                   help="a prompt longer than the context window: error (default; names both token counts), "
                        "drop-examples (oldest first) or truncate-left (keep the last tokens)")


def resolve_prompt(args, tokenizer, window: int, *, default: str | None = None):
    """The :class:`~minitx.prompt.Prompt` the flags describe, encoded and fitted to ``window``.

    Plain ``--prompt`` text (or ``default`` when nothing is given) or parts;
    mixing the two, or parts without a query, is a :class:`UsageError`, as
    is a prompt that does not fit (naming both token counts) or one the
    tokenizer cannot encode.
    """
    from ..prompt import build_prompt, fit_prompt, load_prompt_spec, load_template, parse_example  # noqa: PLC0415

    parts = [n for n in PROMPT_PART_FLAGS if getattr(args, n, None) is not None]
    text = None
    if args.prompt is not None:
        if parts:
            raise UsageError(f"--prompt with --{parts[0].replace('_', '-')}: expected plain text (--prompt) or a "
                             "prompt built from parts, not both")
        text = args.prompt
    spec = {}
    if args.prompt_file is not None:
        if not str(args.prompt_file).endswith(".json"):
            others = [n for n in parts if n != "prompt_file"]
            if others:
                raise UsageError(f"--prompt-file {args.prompt_file} with --{others[0].replace('_', '-')}: a text "
                                 "file is the whole prompt; expected a .json prompt file to combine with parts")
            try:
                with open(args.prompt_file, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"--prompt-file {args.prompt_file}: cannot read it ({exc}); expected a UTF-8 "
                                 "text file") from None
            parts = []
        else:
            spec = load_prompt_spec(args.prompt_file)
    if text is None and not parts:
        text = default
    try:
        if parts:
            template = load_template(args.template if args.template is not None else spec.get("template", "plain"))
            examples = [parse_example(e, name=f"--example {e!r}") for e in args.example] \
                if args.example is not None else spec.get("examples", [])
            query = args.query if args.query is not None else spec.get("query")
            if query is None:
                raise UsageError("--query: missing, expected the input to answer (with --template, --example or a "
                                 ".json --prompt-file)")
            instruction = args.instruction if args.instruction is not None else spec.get("instruction")
            labels = args.label if args.label is not None else spec.get("labels")
            prompt = build_prompt(template, query, examples, instruction=instruction, labels=labels)
        elif text is None or text == "":
            raise UsageError("--prompt: got an empty prompt, expected at least one character")
        else:
            prompt = text
        return fit_prompt(prompt, tokenizer, window, overflow=args.overflow)
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None


__all__ = ["add_adapter_option", "add_lora_options", "load_finetuned_or_none", "lora_targets",
           "DEFAULT_CUDA_BACKEND", "PROMPT_PART_FLAGS", "add_prompt_options", "resolve_prompt", "MODEL_FLAGS", "TRAIN_FLAGS", "add_device_options", "add_model_options",
           "add_run_options", "add_training_options", "announce", "given", "interrupted_message", "parallel_plan",
           "select_device", "train_config", "using_backend"]
