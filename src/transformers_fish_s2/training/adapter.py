"""The adapter folder: peft's adapter files plus a model card naming the base model, saved or pushed to the Hub."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from peft import PeftModel

from ..hub import hub_errors

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo


def save_adapter(
    peft_model: PeftModel, directory: str | os.PathLike, *, base_model: str, repo_id: str | None = None
) -> None:
    """``save_pretrained`` of the adapter weights and config, plus a model card naming ``base_model`` (a Hub id or
    folder): an adapter is useless without the exact base it was trained on. ``repo_id`` is the adapter's own
    Hub id, shown in the card's usage snippet."""
    directory = Path(directory)
    peft_model.save_pretrained(directory)
    config = peft_model.peft_config["default"]
    targets = (
        config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules)
    )
    (directory / "README.md").write_text(
        MODEL_CARD.format(
            base_model=base_model,
            adapter=repo_id or "<folder or Hub id of this adapter>",
            r=config.r,
            alpha=config.lora_alpha,
            targets=targets,
        ),
        encoding="utf-8",
    )


def push_adapter(
    peft_model: PeftModel,
    repo_id: str,
    *,
    base_model: str,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = "Upload Fish S2 LoRA adapter and model card",
) -> CommitInfo:
    """Upload the adapter folder of :func:`save_adapter` to ``repo_id`` in one commit (creating the repo).

    ``PeftModel.push_to_hub`` would write peft's generic card instead of ours.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with hub_errors(repo_id):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            save_adapter(peft_model, folder, base_model=base_model, repo_id=repo_id)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)


MODEL_CARD = """---
base_model: {base_model}
library_name: peft
pipeline_tag: text-to-speech
tags:
- fish-s2
- lora
- text-to-speech
---

# LoRA adapter for {base_model}

A LoRA adapter (rank {r}, alpha {alpha}) for the Fish Audio S2 text-to-speech model `{base_model}`, trained
with `transformers-fish-s2` (`fish-s2 finetune`). It only works on top of that base model.

Targets: `{targets}`

```python
import transformers_fish_s2
from peft import PeftModel
from transformers import AutoModelForTextToWaveform, AutoProcessor

base = AutoModelForTextToWaveform.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{adapter}")
processor = AutoProcessor.from_pretrained("{base_model}")
inputs = processor(text="Hello!")
codes = model.generate(**inputs)
audio = processor.decode(codes)
```

The base model's license (Fish Audio Research License) applies to its use with this adapter.
"""
