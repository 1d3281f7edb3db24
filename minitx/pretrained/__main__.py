"""``python -m minitx.pretrained [gpt2|llama|bloom|bert|bart|t5]``: print the mapping tables, one row per tensor."""
import sys

from . import PAGES
from .mapping import format_table

names = sys.argv[1:] or sorted(PAGES)
for name in names:
    if name not in PAGES:
        print(f"minitx.pretrained: got {name!r}, expected one of {', '.join(sorted(PAGES))}", file=sys.stderr)
        sys.exit(2)
    print(f"# {name}: minitx name, Hugging Face name(s), transform\n{format_table(PAGES[name].printable_table())}\n")
