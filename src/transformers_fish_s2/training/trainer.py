"""The transformers ``Trainer`` wired for S2 LoRA fine-tuning, and the adapter folder it produces."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import Trainer, TrainingArguments

from . import defaults
from .collator import FishS2DataCollator
from .lora import lora_config


def bf16_supported() -> bool:
    """bf16 training where the hardware does it natively (CUDA with bf16 support); CPU trains in fp32."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def training_arguments(
    output_dir: str | os.PathLike,
    *,
    max_steps: int = defaults.STEPS,
    learning_rate: float = defaults.LEARNING_RATE,
    batch_size: int = defaults.BATCH_SIZE,
    **overrides: Any,
) -> TrainingArguments:
    """``TrainingArguments`` with S2's defaults; any field can be overridden by keyword.

    Activation checkpointing is on (non-reentrant: the frozen embeddings give the first block inputs without
    gradients, which the reentrant variant would not differentiate through); bf16 where supported;
    ``remove_unused_columns=False`` because the model takes ``audio_codes``, which a PEFT wrapper's generic
    signature hides from the Trainer's column filter; the authors' AdamW betas (0.9, 0.95) and gradient
    clipping at 1.0.
    """
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=bf16_supported(),
        remove_unused_columns=False,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        warmup_steps=min(10, max_steps // 10),
        lr_scheduler_type="constant_with_warmup",
        logging_steps=max(1, min(10, max_steps // 10)),
        save_strategy="no",
        report_to="none",
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


class FishS2Trainer(Trainer):
    """``Trainer`` whose loss is the model's own Dual-AR loss (slow + fast cross-entropy, a mean per batch), with
    the two terms logged next to it."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._terms = {"slow_loss": 0.0, "fast_loss": 0.0}
        self._term_steps = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            self._terms["slow_loss"] += outputs.slow_loss.item()
            self._terms["fast_loss"] += outputs.fast_loss.item()
            self._term_steps += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._term_steps:
            logs.update({key: value / self._term_steps for key, value in self._terms.items()})
            self._terms = dict.fromkeys(self._terms, 0.0)
            self._term_steps = 0
        super().log(logs, *args, **kwargs)


def finetune(
    model,
    processor,
    train_dataset: Sequence[dict] | Any,
    args: TrainingArguments,
    *,
    lora: LoraConfig | None = None,
    callbacks: list | None = None,
) -> tuple[PeftModel, list[dict[str, float]]]:
    """Wrap ``model`` with LoRA (default :func:`~.lora.lora_config`), train it and return the adapted model and
    the Trainer's log history. ``train_dataset`` holds training examples (a list or a ``datasets.Dataset``).
    The adapters are injected into ``model`` itself (peft's way); its base weights are not changed.

    A quantized (QLoRA) base first goes through ``peft.prepare_model_for_kbit_training``, which keeps its
    unquantized parameters in fp32 so the adapters' gradients are not computed through bf16 norms.
    """
    if len(train_dataset) == 0:
        raise ValueError("the training set is empty: give at least one training example")
    if getattr(model, "hf_quantizer", None) is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    peft_model = get_peft_model(model, lora or lora_config())
    trainer = FishS2Trainer(
        model=peft_model,
        args=args,
        train_dataset=train_dataset,
        data_collator=FishS2DataCollator.from_processor(processor),
        callbacks=callbacks,
    )
    trainer.train()
    peft_model.eval()
    return peft_model, trainer.state.log_history
