"""Pads training examples into a batch for the ``Trainer``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .examples import IGNORE_INDEX


@dataclass
class FishS2DataCollator:
    """Right-pads ``input_ids`` (with ``pad_token_id``), ``audio_codes`` (0), ``attention_mask`` (0) and
    ``labels`` (-100) to the longest example.

    Right padding keeps every example's positions starting at 0 (as the model derives them from the mask) and
    the padded positions carry no loss. Examples may be tensors or the lists ``datasets`` stores.
    """

    pad_token_id: int
    num_codebooks: int = 10

    @classmethod
    def from_processor(cls, processor) -> FishS2DataCollator:
        return cls(pad_token_id=processor.tokenizer.pad_token_id, num_codebooks=processor.num_codebooks)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        rows = [{key: torch.as_tensor(example[key]) for key in _KEYS} for example in examples]
        length = max(len(row["input_ids"]) for row in rows)
        batch = {
            "input_ids": torch.full((len(rows), length), self.pad_token_id, dtype=torch.long),
            "audio_codes": torch.zeros((len(rows), self.num_codebooks, length), dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), length), dtype=torch.long),
            "labels": torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long),
        }
        for i, row in enumerate(rows):
            size = len(row["input_ids"])
            if row["audio_codes"].shape != (self.num_codebooks, size) or any(
                len(row[key]) != size for key in ("attention_mask", "labels")
            ):
                raise ValueError(
                    f"example {i}: input_ids, attention_mask, labels [T] and audio_codes "
                    f"[{self.num_codebooks}, T] must have the same length T"
                )
            batch["input_ids"][i, :size] = row["input_ids"]
            batch["audio_codes"][i, :, :size] = row["audio_codes"]
            batch["attention_mask"][i, :size] = row["attention_mask"]
            batch["labels"][i, :size] = row["labels"]
        return batch


_KEYS = ("input_ids", "audio_codes", "attention_mask", "labels")
