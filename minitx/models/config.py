"""What every model configuration shares: named presets and a JSON round trip.

A config is a dataclass (its fields are the architecture); this mixin adds

* ``Config.from_preset(name, **overrides)``: a named size from the class's
  ``PRESETS`` table, with any field overridden (``None`` means "keep");
* ``config.to_dict()`` / ``Config.from_dict(d)``: plain JSON-able dicts for
  checkpoints, where unknown or missing fields are a clear ``ValueError``
  (a checkpoint written by another version should say so, not crash).
"""
from __future__ import annotations

import dataclasses


class PresetConfig:
    """Mixin for the model config dataclasses; subclasses set ``PRESETS = {name: {field: value}}``."""

    PRESETS: dict = {}

    @classmethod
    def from_preset(cls, name: str, **overrides):
        if name not in cls.PRESETS:
            raise ValueError(f"preset: got {name!r}, expected one of {', '.join(cls.PRESETS)}")
        fields = dict(cls.PRESETS[name])
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls._build(f"preset {name!r}", fields)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}, expected only {sorted(names)}")
        return cls._build(cls.__name__, d)

    @classmethod
    def _build(cls, what: str, fields: dict):
        try:
            return cls(**fields)
        except TypeError as exc:  # a required field is missing, e.g. the vocabulary size
            required = {f.name for f in dataclasses.fields(cls)
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
            missing = sorted(required - set(fields))
            raise ValueError(f"{what}: missing {', '.join(missing) or exc}; expected every field without a default") from None
