"""Models built from :mod:`minitx.nn` layers.

    gpt.py    decoder-only GPT: config + presets, forward/backward, tied head, KV cache
"""
from .gpt import GPT, PRESETS, GPTConfig

__all__ = ["GPT", "GPTConfig", "PRESETS"]
