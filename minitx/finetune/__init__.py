"""Fine-tuning a trained model: freezing, LoRA adapters, and the three recipes.

    lora.py       apply_lora (LoRALinear on the Linear layers a name pattern picks), merge / unmerge / remove
    adapter.py    save_adapter / load_adapter: the adapter alone, safetensors + JSON naming its base
    recipes.py    prepare(model, "full" | "head" | "lora"), classifier_on (a new head on an encoder body)
    models.py     bases in (minitx runs, Hugging Face folders), fine-tuned runs and adapters read back

The layer itself, with its hand-written backward pass, is
:class:`minitx.nn.lora.LoRALinear`; freezing is
:meth:`minitx.nn.module.Module.freeze`. Training is the one
:class:`~minitx.train.trainer.Trainer`, which sees only the parameters that
are not frozen. See ``docs/finetuning.md``.
"""
from .adapter import (ADAPTER_FILE, ADAPTER_META, adapter_parameters, is_adapter, load_adapter, read_adapter,
                      save_adapter)
from .lora import DEFAULT_TARGETS, apply_lora, lora_layers, merge_lora, remove_lora, unmerge_lora
from .models import load_base, load_finetuned, load_for_use, load_with_adapter
from .recipes import METHODS, classifier_on, prepare

__all__ = ["ADAPTER_FILE", "ADAPTER_META", "DEFAULT_TARGETS", "METHODS", "adapter_parameters", "apply_lora",
           "classifier_on", "is_adapter", "load_adapter", "load_base", "load_finetuned", "load_for_use",
           "load_with_adapter", "lora_layers", "merge_lora", "prepare", "read_adapter", "remove_lora", "save_adapter",
           "unmerge_lora"]
