"""``minitx tokenizer``: placeholder until the BPE tokenizer lands."""


def add_parser(sub):
    p = sub.add_parser("tokenizer", help="train a BPE tokenizer or encode text with one")
    p.set_defaults(func=lambda args: print("tokenizer: not implemented yet") or 0)
