"""Which parts of Fish S2 stay unquantized by default, and the helpers that apply that rule to a config.

Quantize the slow AR's linear layers and keep in the compute dtype

* the whole fast transformer over codebooks (``audio_decoder``): it chooses nine of the ten codes of every
  frame from small logit margins, so 4-bit weights there break the audio; it is also only ~10% of the weights;
* the output head (``lm_head``, present only in untied checkpoints; the released model ties it to the
  embeddings, which are never quantized).

``FishS2ForConditionalGeneration.from_pretrained`` applies the rule whenever a quantization config does not
name its own skip list; :mod:`transformers_fish_s2.quantization` builds configs with it.
"""

from __future__ import annotations

import copy

from transformers.quantizers.auto import AutoQuantizationConfig
from transformers.utils import logging
from transformers.utils.quantization_config import QuantizationConfigMixin

logger = logging.get_logger(__name__)

DEFAULT_SKIP_MODULES: tuple[str, ...] = ("audio_decoder", "lm_head")
"""Module-name patterns kept in the compute dtype unless the quantization config names its own list."""


def skip_modules_of(config: QuantizationConfigMixin) -> list[str] | None:
    """The skip list a quantization config carries (``None`` when unset)."""
    attribute = _skip_attribute(config)
    return None if attribute is None else getattr(config, attribute)


def with_default_skip_modules(config: QuantizationConfigMixin | dict) -> QuantizationConfigMixin:
    """A copy of ``config`` whose unset skip list (``llm_int8_skip_modules`` for bitsandbytes,
    ``modules_to_not_convert`` for the others) is :data:`DEFAULT_SKIP_MODULES`; a list the user set, even an
    empty one, is kept. Dicts (as ``from_pretrained`` also accepts) are parsed first."""
    if isinstance(config, dict):
        config = AutoQuantizationConfig.from_dict(config)
    attribute = _skip_attribute(config)
    if attribute is None or getattr(config, attribute) is not None:
        return config
    config = copy.deepcopy(config)
    setattr(config, attribute, list(DEFAULT_SKIP_MODULES))
    logger.info(
        "Quantizing Fish S2 with the default skip list %s (fast AR and output head stay in the compute dtype); "
        "pass an explicit list to change it.",
        list(DEFAULT_SKIP_MODULES),
    )
    return config


def _skip_attribute(config: QuantizationConfigMixin) -> str | None:
    for attribute in ("llm_int8_skip_modules", "modules_to_not_convert"):
        if hasattr(config, attribute):
            return attribute
    return None
