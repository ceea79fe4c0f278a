"""Fine-tuning S2 with ``peft`` LoRA and the transformers ``Trainer`` (docs/fine-tuning.md).

``examples`` turns clips and transcripts into training examples, ``collator`` pads them, ``lora`` holds the
default adapter targets, ``trainer`` wires the ``Trainer``, ``adapter`` saves and pushes the adapter folder.
``peft`` is imported only by ``lora``, ``trainer`` and ``adapter`` (the ``train`` extra).
"""

from .collator import FishS2DataCollator
from .examples import (
    IGNORE_INDEX,
    ClipEncoder,
    DatasetMapper,
    build_training_example,
    load_clip,
    prepare_examples,
)

__all__ = [
    "IGNORE_INDEX",
    "ClipEncoder",
    "DatasetMapper",
    "FishS2DataCollator",
    "build_training_example",
    "load_clip",
    "prepare_examples",
]
