"""Weight quantization of Fish S2 through transformers' bitsandbytes and optimum-quanto integrations.

The default rule (:mod:`transformers_fish_s2.modeling.quantization_defaults`, applied by
``FishS2ForConditionalGeneration.from_pretrained`` whenever a quantization config does not name its own skip
list) quantizes the slow AR's linear layers and keeps the fast transformer over codebooks (``audio_decoder``)
and an untied output head (``lm_head``) in the compute dtype. Embedding tables, norms and the codec are not
linear layers, so neither library ever converts them.

An explicit skip list replaces the rule (transformers then drops its own defaults too): ``skip_modules=[]``
quantizes every linear layer, ``skip_modules=["audio_decoder.output", "lm_head"]`` quantizes the fast AR's
transformer but keeps its head. Names match by prefix or suffix of the dotted module path
(``transformers.quantizers.quantizers_utils.should_convert_module``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BitsAndBytesConfig, QuantoConfig
from transformers.utils.quantization_config import QuantizationConfigMixin

from .modeling.quantization_defaults import DEFAULT_SKIP_MODULES, skip_modules_of, with_default_skip_modules

__all__ = [
    "DEFAULT_SKIP_MODULES",
    "QUANTIZATION_SCHEMES",
    "bnb_config",
    "quantization_config",
    "quanto_config",
    "skip_modules_of",
    "with_default_skip_modules",
]

QUANTIZATION_SCHEMES: tuple[str, ...] = ("bnb-8bit", "bnb-4bit", "quanto-int8", "quanto-int4")
"""Names accepted by :func:`quantization_config` (and by the memory estimator and the CLI)."""


def bnb_config(
    bits: int = 4,
    *,
    compute_dtype: torch.dtype = torch.bfloat16,
    skip_modules: Sequence[str] | None = None,
    double_quant: bool = True,
    **kwargs,
) -> BitsAndBytesConfig:
    """A ``BitsAndBytesConfig`` with our defaults: LLM.int8 (``bits=8``) or NF4 with double quantization and
    bf16 compute (``bits=4``, the QLoRA recipe), and :data:`DEFAULT_SKIP_MODULES` unless ``skip_modules`` is given.
    Extra ``kwargs`` go to ``BitsAndBytesConfig`` unchanged."""
    skip = list(DEFAULT_SKIP_MODULES if skip_modules is None else skip_modules)
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip, **kwargs)
    if bits == 4:
        kwargs.setdefault("bnb_4bit_quant_type", "nf4")
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_use_double_quant=double_quant,
            llm_int8_skip_modules=skip,
            **kwargs,
        )
    raise ValueError(f"bits must be 8 or 4 for bitsandbytes, got {bits!r}")


def quanto_config(weights: str = "int8", *, skip_modules: Sequence[str] | None = None) -> QuantoConfig:
    """A weight-only ``QuantoConfig`` (``weights`` in int8/int4/int2/float8) with :data:`DEFAULT_SKIP_MODULES`
    unless ``skip_modules`` is given. Quanto models are quantized at load time and cannot be saved."""
    skip = list(DEFAULT_SKIP_MODULES if skip_modules is None else skip_modules)
    return QuantoConfig(weights=weights, modules_to_not_convert=skip)


def quantization_config(
    scheme: str | QuantizationConfigMixin | None,
    *,
    compute_dtype: torch.dtype = torch.bfloat16,
    skip_modules: Sequence[str] | None = None,
) -> QuantizationConfigMixin | None:
    """The config for a scheme name from :data:`QUANTIZATION_SCHEMES` (``None``/``"none"`` → no quantization);
    a config object is returned with the default skip rule filled in (see :func:`with_default_skip_modules`)."""
    if scheme is None or scheme == "none":
        return None
    if isinstance(scheme, QuantizationConfigMixin):
        if skip_modules is not None:
            raise ValueError("pass skip_modules with a scheme name, or set it inside the quantization config")
        return with_default_skip_modules(scheme)
    if scheme == "bnb-8bit":
        return bnb_config(8, skip_modules=skip_modules)
    if scheme == "bnb-4bit":
        return bnb_config(4, compute_dtype=compute_dtype, skip_modules=skip_modules)
    if scheme in ("quanto-int8", "quanto-int4"):
        return quanto_config(scheme.removeprefix("quanto-"), skip_modules=skip_modules)
    raise ValueError(
        f"unknown quantization scheme {scheme!r}; expected one of {', '.join(('none',) + QUANTIZATION_SCHEMES)} "
        "or a transformers quantization config"
    )
