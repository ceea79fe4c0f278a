"""The generation options ``generate`` implements: their defaults, one check each, and the merge order.

Every option has one row in :data:`OPTIONS` (name, the test it must pass, what the message says it must be);
:func:`merge_generation_config` runs each row once on the merged values. ``GenerationConfig`` fields outside
:data:`IMPLEMENTED_FIELDS` and :data:`IGNORED_FIELDS` are refused when set, so a field that a newer
transformers adds is an error until this loop implements it, never a silent no-op.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import GenerationConfig

from ..validation import short_repr

FISH_S2_GENERATION_DEFAULTS = {
    "do_sample": True,
    "temperature": 0.8,
    "top_p": 0.8,
    "top_k": 30,
    "repetition_penalty": 1.0,
    "max_new_tokens": 1024,
    "ras_window_size": 10,
    "ras_temperature": 1.0,
    "ras_top_p": 0.9,
    "return_dict_in_generate": True,
}
"""Shipped sampling defaults: the authors' HTTP API values (temperature/top_p 0.8, top_k 30, 1024 frames)
with their repetition-aware sampling (window 10, fallback temperature 1.0 / top_p 0.9). The reference
accepts ``repetition_penalty`` but never applies it, hence 1.0 (off)."""

MAX_RAS_WINDOW_SIZE = 1024
"""Largest ``ras_window_size`` (frames of history, about 48 s; the reference uses 10). The window is a
``[batch, window]`` buffer compared with every new token, so a hostile value (10^9) would allocate gigabytes."""

FISH_S2_EXTRA_FIELDS = ("ras_window_size", "ras_temperature", "ras_top_p")
"""Options this model adds to ``GenerationConfig`` (repetition-aware sampling)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)


@dataclass(frozen=True)
class Option:
    """One generation option: ``check(value)`` must hold, else ``"{name} must be {requirement}"``.

    ``when_sampling`` options are only checked (and only used) with ``do_sample=True``.
    """

    name: str
    check: Callable[[Any], bool]
    requirement: str
    when_sampling: bool = False


OPTIONS: tuple[Option, ...] = (
    Option("do_sample", lambda v: isinstance(v, bool), "True or False"),
    Option("max_new_tokens", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    Option("repetition_penalty", lambda v: _is_real(v) and v > 0, "> 0"),
    Option(
        "ras_window_size",
        lambda v: _is_int(v) and 0 <= v <= MAX_RAS_WINDOW_SIZE,
        f"an integer in [0, {MAX_RAS_WINDOW_SIZE}] (MAX_RAS_WINDOW_SIZE)",
    ),
    Option("temperature", lambda v: _is_real(v) and v > 0, "> 0 when sampling", when_sampling=True),
    Option("top_p", lambda v: _is_real(v) and 0 < v <= 1, "in (0, 1]", when_sampling=True),
    Option("top_k", lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0 (0 disables it)", True),
    Option("ras_temperature", lambda v: _is_real(v) and v > 0, "> 0", when_sampling=True),
    Option("ras_top_p", lambda v: _is_real(v) and 0 < v <= 1, "in (0, 1]", when_sampling=True),
    Option("return_dict_in_generate", lambda v: isinstance(v, bool), "True or False"),
)
"""The options the frame loop implements, in the order they are checked."""

SAMPLING_ONLY = frozenset(option.name for option in OPTIONS if option.when_sampling)
"""Options that only matter with ``do_sample=True``."""

IMPLEMENTED_FIELDS = frozenset({option.name for option in OPTIONS} | {"compile_config"})
"""``GenerationConfig`` fields ``generate`` reads (``compile_config`` configures ``compile=True``)."""

IGNORED_FIELDS = frozenset(
    {
        "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id",  # the model config's ids rule
        "use_cache", "cache_implementation",  # generate always decodes with its own static caches
        "transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash",
    }
)  # fmt: skip
"""Fields that may carry any value: metadata, or settings the loop fulfils its own way."""

NEUTRAL_VALUES = {"num_beams": 1, "num_return_sequences": 1, "num_beam_groups": 1}
"""Fields outside the allow-lists that are accepted at these values (they ask for nothing)."""


def _is_set(name: str, value: Any) -> bool:
    return value not in (None, False) and value != NEUTRAL_VALUES.get(name)


class FishS2GenerationConfig(GenerationConfig):
    """A ``GenerationConfig`` whose unset fields take the Fish S2 defaults (:data:`FISH_S2_GENERATION_DEFAULTS`).

    Extra fields: ``ras_window_size`` (frames of history for repetition-aware sampling; 0 disables it),
    ``ras_temperature`` and ``ras_top_p`` (parameters of the fallback draw). Saved as ordinary
    ``generation_config.json`` entries, which plain ``GenerationConfig`` loading keeps.
    """

    def __init__(self, **kwargs):
        # Set the extra fields ourselves: GenerationConfig drops unknown kwargs when built from a model config.
        extra = {key: kwargs.pop(key, None) for key in FISH_S2_EXTRA_FIELDS}
        greedy = kwargs.get("do_sample") is False  # sampling defaults would only make GenerationConfig warn
        for key, value in FISH_S2_GENERATION_DEFAULTS.items():
            if key in FISH_S2_EXTRA_FIELDS or kwargs.get(key) is not None or (greedy and key in SAMPLING_ONLY):
                continue
            kwargs[key] = value
        super().__init__(**kwargs)
        for key, value in extra.items():
            setattr(self, key, FISH_S2_GENERATION_DEFAULTS[key] if value is None else value)
        # These are real settings, not values derived from the model config: saved with the flag set,
        # transformers' loader would drop the extra fields on the way back.
        self._from_model_config = False

    @classmethod
    def from_model_config(cls, model_config) -> FishS2GenerationConfig:
        # transformers' version compares every field with a plain GenerationConfig, which lacks the extra ones.
        return cls(**GenerationConfig.from_model_config(model_config).to_dict())


def merge_generation_config(
    model_config: GenerationConfig, generation_config: GenerationConfig | None, kwargs: dict
) -> FishS2GenerationConfig:
    """The options of one ``generate`` call, checked.

    Priority: ``kwargs`` > ``generation_config`` (its fields that differ from a blank ``GenerationConfig``) >
    ``model_config`` (``model.generation_config``) > :data:`FISH_S2_GENERATION_DEFAULTS`.
    """
    if generation_config is not None and not isinstance(generation_config, GenerationConfig):
        raise TypeError(
            "generation_config must be a transformers GenerationConfig, got "
            f"{type(generation_config).__name__}; pass options as keyword arguments"
        )
    if "output_audio" in kwargs:  # CSM's flag; here the codec belongs to the processor, not the model
        raise TypeError(
            "Fish S2 generate() returns codes, not audio (output_audio): the codec lives on the processor. Decode "
            "with processor.batch_decode(output) (one waveform per row), or use pipeline('text-to-speech'), "
            "which generates and decodes"
        )
    known = GenerationConfig().to_dict().keys() | set(FISH_S2_EXTRA_FIELDS)
    if unknown := sorted(kwargs.keys() - known):
        raise TypeError(f"generate() got unexpected keyword argument(s) {unknown}")
    values = {**FISH_S2_GENERATION_DEFAULTS, **_set_fields(model_config)}
    if generation_config is not None:
        values.update(_set_fields(generation_config))
    values.update(kwargs)
    check_options(values)
    if values.get("do_sample") is False:  # unused when greedy; GenerationConfig would warn the user about them
        values = {key: value for key, value in values.items() if key not in SAMPLING_ONLY}
    return FishS2GenerationConfig(**values)


def _set_fields(config: GenerationConfig) -> dict:
    blank = GenerationConfig().to_dict()
    return {key: value for key, value in config.to_dict().items() if value != blank.get(key)}


def check_options(values: dict) -> None:
    """Refuse options this loop does not implement, then run each :data:`OPTIONS` check once."""
    unsupported = sorted(
        name
        for name, value in values.items()
        if name not in IMPLEMENTED_FIELDS and name not in IGNORED_FIELDS and _is_set(name, value)
    )
    if unsupported:
        raise ValueError(
            f"Fish S2 generate() does not support {unsupported}; it decodes greedily or with the reference "
            "sampler (temperature, top_p, top_k, repetition_penalty, ras_*) up to max_new_tokens"
        )
    sampling = values.get("do_sample") is True
    for option in OPTIONS:
        if option.when_sampling and not sampling:
            continue
        value = values.get(option.name)
        if not option.check(value):
            raise ValueError(
                f"generation config: {option.name} must be {option.requirement}, got {short_repr(value)}"
            )
