"""Fine-tuning S2 with ``peft`` LoRA and the transformers ``Trainer`` (docs/fine-tuning.md).

``examples`` turns clips and transcripts into training examples, ``collator`` pads them, ``lora`` holds the
default adapter targets, ``trainer`` wires the ``Trainer``, ``adapter`` saves and pushes the adapter folder.
``peft`` is imported only by ``lora``, ``trainer`` and ``adapter`` (the ``train`` extra).
"""

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "FishS2DataCollator": ".collator",
    **dict.fromkeys(
        ("IGNORE_INDEX", "ClipEncoder", "DatasetMapper", "build_training_example", "load_clip", "prepare_examples"),
        ".examples",
    ),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)  # `fish-s2 --help` reads .defaults without torch
__all__ = sorted(_EXPORTS)
