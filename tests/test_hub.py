"""Hub readiness without a network: model card, a saved folder that loads through the Auto classes, uploads
through our one-commit push and through the transformers mixins (Hub API replaced by a local folder), and the
explanations of Hub access errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY
from huggingface_hub import ModelCard
from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError
from transformers import AutoModelForTextToWaveform, AutoProcessor, GenerationConfig

from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor
from transformers_fish_s2.hub import (
    HubAccessError,
    explain_hub_error,
    hub_errors,
    load_model_and_processor,
    model_card,
    push_to_hub,
    save_for_hub,
)

MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors"}
PROCESSOR_FILES = {
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "codec/config.json",
    "codec/model.safetensors",
}


@pytest.fixture(scope="module")
def tiny():
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    return model, FishS2Processor.from_pretrained(TINY)


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def assert_same_checkpoint(folder: Path, model, processor) -> None:
    """The folder loads offline through the Auto classes into the same weights, codec and settings."""
    loaded = AutoModelForTextToWaveform.from_pretrained(folder)
    assert type(loaded) is FishS2ForConditionalGeneration
    for (name, expected), (_, actual) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=name)
    assert loaded.generation_config.to_diff_dict() == model.generation_config.to_diff_dict()
    reloaded = AutoProcessor.from_pretrained(folder)
    assert type(reloaded) is FishS2Processor
    assert reloaded.to_dict() == processor.to_dict()
    for name, expected in processor.codec.state_dict().items():
        torch.testing.assert_close(reloaded.codec.state_dict()[name], expected, rtol=0, atol=0, msg=name)


def test_model_card_metadata_and_text(tiny, tmp_path):
    model, processor = tiny
    path = tmp_path / "README.md"
    model_card(model, processor, repo_id="someone/s2-tiny").save(path)
    card = ModelCard.load(path)  # parses the YAML header back
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-to-speech"
    assert card.data.license == "other"
    assert card.data.license_name == "fish-audio-research-license"
    assert card.data.license_link.endswith("fishaudio/s2-pro/blob/main/LICENSE.md")
    assert card.data.base_model == "fishaudio/s2-pro"
    assert "text-to-speech" in card.data.tags
    text = card.text
    assert "pip install transformers-fish-s2" in text
    assert 'pipeline("text-to-speech", model="someone/s2-tiny")' in text
    assert "44100 Hz, 2048 samples (46.4 ms) per frame" in text
    assert "Fish Audio Research License" in text
    assert f"{sum(p.numel() for p in model.parameters()):,}" in text
    assert "| `top_k` | `30` |" in text  # generation defaults come from the model's generation config
    # the released model itself has no base model
    assert model_card(model, processor, repo_id="fishaudio/s2-pro").data.base_model is None


def test_saved_folder_loads_offline_through_auto_classes(tiny, tmp_path):
    model, processor = tiny
    folder = save_for_hub(model, processor, tmp_path / "s2-tiny", repo_id="someone/s2-tiny")
    assert files_under(folder) == MODEL_FILES | PROCESSOR_FILES | {"README.md"}
    assert_same_checkpoint(folder, model, processor)
    generation = GenerationConfig.from_pretrained(folder)  # what any transformers tool reads
    assert (generation.temperature, generation.top_p, generation.top_k) == (0.8, 0.8, 30)
    assert generation.max_new_tokens == 1024
    assert ModelCard.load(folder / "README.md").data.pipeline_tag == "text-to-speech"


def test_repetition_aware_sampling_settings_survive_save_and_reload(tmp_path):
    model = FishS2ForConditionalGeneration.from_pretrained(TINY)
    model.generation_config.ras_window_size = 4
    model.save_pretrained(tmp_path)
    assert FishS2ForConditionalGeneration.from_pretrained(tmp_path).generation_config.ras_window_size == 4


class LocalHub:
    """Stands in for the Hub API: repos are folders under ``root``; records every call."""

    def __init__(self, root: Path, user: str = "someone"):
        self.root, self.user, self.calls = root, user, []

    def create_repo(self, repo_id, **kwargs):
        repo_id = repo_id if "/" in repo_id else f"{self.user}/{repo_id}"
        self.calls.append(("create_repo", repo_id, kwargs))
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):  # one commit (ours)
        self.calls.append(("upload_folder", repo_id, commit_message))
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)
        return SimpleNamespace(commit_message=commit_message)

    def create_commit(self, *, repo_id, operations, commit_message, **kwargs):  # the transformers mixins
        self.calls.append(("create_commit", repo_id, commit_message))
        for operation in operations:
            target = self.root / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(operation.path_or_fileobj, target)
        return SimpleNamespace(commit_message=commit_message)


def test_push_to_hub_uploads_model_processor_and_card_in_one_commit(tiny, tmp_path, monkeypatch):
    model, processor = tiny
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: hub)
    push_to_hub(model, processor, "s2-tiny", private=True)
    assert [call[0] for call in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][2]["private"] is True
    remote = tmp_path / "hub" / "someone" / "s2-tiny"
    assert files_under(remote) == MODEL_FILES | PROCESSOR_FILES | {"README.md"}
    card = ModelCard.load(remote / "README.md")
    assert card.data.library_name == "transformers"
    assert 'model="someone/s2-tiny"' in card.text  # the card names the repo the user will load
    assert_same_checkpoint(remote, model, processor)


def test_model_push_to_hub_writes_our_card_and_the_processor_mixin_uploads_too(tiny, tmp_path, monkeypatch):
    model, processor = tiny
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr("transformers.utils.hub.hf_api", lambda: hub)
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: hub)

    def no_remote_card(*args, **kwargs):
        raise EntryNotFoundError("no README.md in the repo yet")

    monkeypatch.setattr("transformers.utils.hub.ModelCard.load", no_remote_card)
    processor.push_to_hub("someone/s2-tiny")  # the transformers mixin (a generic card, replaced below)
    model.push_to_hub("someone/s2-tiny")
    assert [call[0] for call in hub.calls] == ["create_repo", "create_commit", "create_repo", "upload_folder"]
    assert [call[2] for call in hub.calls[1::2]] == ["Upload processor", "Upload Fish S2 model and model card"]
    remote = tmp_path / "hub" / "someone" / "s2-tiny"
    assert files_under(remote) == MODEL_FILES | PROCESSOR_FILES | {"README.md"}
    card = ModelCard((remote / "README.md").read_text())  # ModelCard.load is patched here
    assert card.data.pipeline_tag == "text-to-speech" and "transformers-fish-s2" in card.data.tags
    assert "pip install transformers-fish-s2" in card.text and "This is the model card of a" not in card.text
    assert_same_checkpoint(remote, model, processor)


# ------------------------------------------------------------------------------------------------------------
# Hub access errors
# ------------------------------------------------------------------------------------------------------------


def test_offline_repo_id_error_says_how_to_use_a_local_folder():
    with pytest.raises(HubAccessError) as caught:
        load_model_and_processor("fishaudio/s2-pro", device="cpu")
    message = str(caught.value)
    assert "'fishaudio/s2-pro'" in message and "offline mode is on" in message
    assert "hf download fishaudio/s2-pro --local-dir ./s2-pro" in message and "--model ./s2-pro" in message
    assert isinstance(caught.value, OSError) and caught.value.__cause__ is not None

    with pytest.raises(HubAccessError, match=r"'\./no-such-checkpoint' is not an existing folder"):
        load_model_and_processor("./no-such-checkpoint", device="cpu")


def _http_error(cls, message: str):
    try:  # the HTTP client huggingface_hub builds its errors from (httpx2 in 2.x, httpx in 1.x)
        import httpx2 as http
    except ImportError:
        import httpx as http
    url = "https://huggingface.co/fishaudio/s2-pro/resolve/main/config.json"
    response = http.Response(401, request=http.Request("GET", url))
    return cls(message, response=response)


def _wrapped(error: Exception) -> OSError:
    """An OSError caused by ``error``, the way transformers reports Hub failures."""
    try:
        try:
            raise error
        except Exception as cause:
            raise OSError("transformers' generic message") from cause
    except OSError as wrapped:
        return wrapped


def test_gated_and_unknown_repos_are_explained():
    gated = _wrapped(_http_error(GatedRepoError, "Access to model fishaudio/s2-pro is restricted."))
    message = explain_hub_error(gated, "fishaudio/s2-pro")
    assert "gated repository" in message and "https://huggingface.co/fishaudio/s2-pro" in message
    assert "hf auth login" in message and "local copy" in message

    missing = _wrapped(_http_error(RepositoryNotFoundError, "404"))
    assert "neither a local folder nor a Hub repository" in explain_hub_error(missing, "someone/typo")

    # anything else is not a Hub problem and passes through unchanged
    assert explain_hub_error(ValueError("max_new_tokens must be positive"), "fishaudio/s2-pro") is None
    with pytest.raises(ValueError, match="must be positive"), hub_errors("fishaudio/s2-pro"):
        raise ValueError("max_new_tokens must be positive")
    with pytest.raises(HubAccessError, match="gated repository"), hub_errors("fishaudio/s2-pro"):
        raise gated
