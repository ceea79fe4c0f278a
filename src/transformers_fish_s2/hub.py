"""The Hugging Face Hub side of Fish S2: loading with clear errors, the model card, saving and pushing.

* :func:`load_model_and_processor` loads a checkpoint folder or Hub repo; when the Hub cannot be reached, the repo
  is gated, or the name is neither a folder nor a repo, the error says so and how to pass a local path instead of
  showing transformers' generic message (:func:`hub_errors` does this around any loading code).
* :func:`model_card` writes the README of a checkpoint (``library_name: transformers``, ``pipeline_tag:
  text-to-speech``, usage through this package, the audio format, the license of the weights).
* :func:`save_for_hub` and :func:`push_to_hub` write or upload model + processor + card in one folder / commit.
  ``model.push_to_hub`` uploads through :func:`push_to_hub` too (our card, not transformers' generic one).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module; keep torch/transformers out of its start-up
    import torch
    from huggingface_hub import CommitInfo, ModelCard

    from .modeling import FishS2ForConditionalGeneration
    from .processing import FishS2Processor

DEFAULT_MODEL_ID = "fishaudio/s2-pro"
WEIGHTS_LICENSE = "Fish Audio Research License"
WEIGHTS_LICENSE_ID = "fish-audio-research-license"
WEIGHTS_LICENSE_URL = "https://huggingface.co/fishaudio/s2-pro/blob/main/LICENSE.md"
PACKAGE = "transformers-fish-s2"
CARD_TAGS = ("text-to-speech", "fish-audio", "fish-s2", "dual-ar", PACKAGE)


class HubAccessError(OSError):
    """A checkpoint could not be fetched from the Hub; the message says why and how to use a local copy."""


# ------------------------------------------------------------------------------------------------------------
# Loading with clear errors
# ------------------------------------------------------------------------------------------------------------


def looks_like_local_path(name: str) -> bool:
    """True for names that can only mean a folder (``./s2-pro``, ``/models/s2``, ``~/s2``, ``a/b/c``), not a repo id."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def explain_hub_error(error: BaseException, name: str, *, action: str = "load") -> str | None:
    """A user-facing explanation of why ``name`` could not be loaded from (``action="load"``) or uploaded to
    (``action="upload"``) the Hub, or ``None`` when ``error`` is not a Hub access problem. Looks through the
    chain of causes: transformers wraps huggingface_hub's errors in ``OSError`` and the processor wraps those
    again."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = " ".join(str(e) for e in chain).lower()
    unreachable = (
        any(isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError)) for e in chain)
        or "couldn't connect to" in text
        or "offline mode" in text
    )
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if action == "upload":
        return _explain_upload_error(chain, text, name, unreachable=unreachable, offline=offline)
    local = (
        "download it once where the Hub is reachable "
        f"(`hf download {name} --local-dir ./{name.rsplit('/', 1)[-1]}`) and pass that folder instead of the "
        f'repo id (`--model ./{name.rsplit("/", 1)[-1]}` on the command line, `from_pretrained("./...")` in '
        "Python)"
    )
    if any(isinstance(e, GatedRepoError) for e in chain) or "gated repo" in text:
        return (
            f"{name!r} is a gated repository on the Hugging Face Hub: accept its license at "
            f"https://huggingface.co/{name} and log in (`hf auth login`, or set HF_TOKEN), or use a local copy "
            "of the checkpoint by passing its folder."
        )
    if unreachable:
        why = (
            "offline mode is on (HF_HUB_OFFLINE)"
            if offline
            else "the Hugging Face Hub cannot be reached (set HF_HUB_OFFLINE=1 to skip the network retries "
            "when working offline)"
        )
        return f"cannot load {name!r}: {why} and it is not in the local cache. To use it, {local}."
    if any(isinstance(e, HFValidationError) for e in chain) or (
        looks_like_local_path(name) and not os.path.exists(os.path.expanduser(name))
    ):
        return (
            f"{name!r} is not an existing folder (and not a valid Hub repo id such as {DEFAULT_MODEL_ID!r})."
        )
    if any(isinstance(e, RepositoryNotFoundError) for e in chain) or "not a valid model identifier" in text:
        return (
            f"{name!r} is neither a local folder nor a Hub repository you can access: check the spelling; a "
            "private repository also needs `hf auth login` (or HF_TOKEN)."
        )
    return None


def _explain_upload_error(
    chain: list, text: str, name: str, *, unreachable: bool, offline: bool
) -> str | None:
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    if unreachable:
        why = (
            "offline mode is on (HF_HUB_OFFLINE); unset it to upload"
            if offline
            else "the Hugging Face Hub cannot be reached; upload again when it is (the model is unchanged)"
        )
        return f"cannot upload to {name!r}: {why}. To keep the files meanwhile, save_pretrained to a folder."
    if any(isinstance(e, HFValidationError) for e in chain):
        return f"cannot upload to {name!r}: not a valid Hub repo id (expected 'user/name')."
    if any(isinstance(e, HfHubHTTPError) for e in chain) and any(code in text for code in ("401", "403")):
        return (
            f"cannot upload to {name!r}: not logged in or no write access; log in with a write token "
            "(`hf auth login`, or set HF_TOKEN)."
        )
    return None


@contextmanager
def hub_errors(name: str | os.PathLike, *, action: str = "load") -> Iterator[None]:
    """Re-raise Hub access failures inside the block as :class:`HubAccessError` with :func:`explain_hub_error`'s
    message for ``action`` (``"load"`` or ``"upload"``; the original error stays attached as the cause);
    other errors pass through unchanged."""
    try:
        yield
    except HubAccessError:
        raise
    except (OSError, ValueError) as error:
        message = explain_hub_error(error, str(name), action=action)
        if message is None:
            raise
        raise HubAccessError(message) from error


def default_device() -> str:
    """Where a model runs unless told: CUDA when available, else Apple's MPS when available, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def load_model_and_processor(
    name: str | os.PathLike = DEFAULT_MODEL_ID,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    quantization=None,
    **kwargs,
) -> tuple[FishS2ForConditionalGeneration, FishS2Processor]:
    """Load the model and its processor (tokenizer + codec) from a folder or Hub repo, ready on ``device``.

    Args:
        name: a checkpoint folder (official layout or one written by :func:`save_for_hub`) or a Hub repo id.
        device: where model and codec run (default: :func:`default_device`: CUDA, else MPS, else CPU).
        dtype: model weights dtype (default: bfloat16 on CUDA, float32 elsewhere). The codec stays float32.
        quantization: ``None``/``"none"``, a scheme of :data:`transformers_fish_s2.quantization.QUANTIZATION_SCHEMES`
            or a transformers quantization config; quantized models are placed with ``device_map``.
        **kwargs: passed to ``FishS2ForConditionalGeneration.from_pretrained`` (``revision``, ``token``, ...).

    Raises:
        HubAccessError: the Hub is unreachable or offline and the repo is not cached, the repo is gated, or
            ``name`` is neither a folder nor an accessible repo.
    """
    import torch

    from .modeling import FishS2ForConditionalGeneration
    from .processing import FishS2Processor
    from .quantization import quantization_config
    from .validation import HUB_KWARGS, parse_dtype

    name = str(name)
    device = torch.device(device or default_device())
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = parse_dtype(dtype)
    quant = quantization_config(quantization, compute_dtype=dtype)
    if os.path.isfile(os.path.expanduser(name)):
        raise ValueError(
            f"{name!r} is a file; pass the checkpoint folder that holds config.json, the weights and the tokenizer "
            "(or a Hub repo id)"
        )
    if os.path.isdir(os.path.expanduser(name)):
        name = os.path.expanduser(name)
    hub = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
    with hub_errors(name):
        if quant is None:
            model = FishS2ForConditionalGeneration.from_pretrained(name, dtype=dtype, **kwargs).to(device)
        else:
            model = FishS2ForConditionalGeneration.from_pretrained(
                name, dtype=dtype, quantization_config=quant, device_map={"": str(device)}, **kwargs
            )
        processor = FishS2Processor.from_pretrained(name, **hub)
    if processor.codec is not None:
        processor.codec.to(device)
    return model.eval(), processor


# ------------------------------------------------------------------------------------------------------------
# Model card, saving, pushing
# ------------------------------------------------------------------------------------------------------------


def model_card(
    model: FishS2ForConditionalGeneration,
    processor: FishS2Processor | None = None,
    *,
    repo_id: str | None = None,
    base_model: str | None = DEFAULT_MODEL_ID,
    description: str | None = None,
) -> ModelCard:
    """The README of a Fish S2 checkpoint as a ``huggingface_hub.ModelCard``.

    Metadata: ``library_name: transformers``, ``pipeline_tag: text-to-speech``, the weights' license
    (``other`` / Fish Audio Research License), ``base_model`` (omitted when it is ``repo_id`` itself) and tags.
    The text gives pip usage (pipeline, explicit generate, CLI), the architecture numbers, the output audio
    format and the generation defaults.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from .codec import FishS2CodecConfig

    config = model.config
    text, fast = config.text_config, config.audio_decoder_config
    repo = repo_id or "path/to/checkpoint"
    if base_model == repo_id:
        base_model = None
    codec = getattr(processor, "codec", None)
    codec_config = codec.config if codec is not None else FishS2CodecConfig()  # the released codec's
    sampling_rate, frame_length = codec_config.sampling_rate, codec_config.frame_length
    parameters = sum(p.numel() for p in model.parameters())
    generation = {
        key: value
        for key, value in model.generation_config.to_diff_dict().items()
        if key not in ("transformers_version", "_from_model_config", "eos_token_id", "pad_token_id")
    }
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-to-speech",
        license="other",
        license_name=WEIGHTS_LICENSE_ID,
        license_link=WEIGHTS_LICENSE_URL,
        base_model=base_model,
        tags=list(CARD_TAGS),
    )
    generation_rows = "\n".join(f"| `{key}` | `{value}` |" for key, value in sorted(generation.items()))
    description = description or (
        "Fish Audio S2 text-to-speech (a Dual-AR transformer over a 10-codebook audio codec), packaged as a "
        f"native Hugging Face `transformers` model by [`{PACKAGE}`](https://pypi.org/project/{PACKAGE}/)."
    )
    slow_ar = (
        f"{text.n_layer} layers, width {text.dim}, {text.n_head} query / {text.num_key_value_heads} KV heads, "
        f"context {text.max_seq_len}"
    )
    audio = f"mono, {sampling_rate} Hz, {frame_length} samples ({frame_length / sampling_rate * 1000:.1f} ms) per frame"
    body = f"""
# {repo.rsplit("/", 1)[-1]}

{description}

## Usage

```bash
pip install {PACKAGE}
```

```python
import transformers_fish_s2  # registers the model with transformers' Auto classes
from transformers import pipeline

tts = pipeline("text-to-speech", model="{repo}")
out = tts("Hello! [laughing] This is Fish Audio S2.")
# out["audio"]: float32 waveform, out["sampling_rate"]: {sampling_rate}

# voice cloning: a reference clip and its transcript
out = tts("Nice to meet you.", references=[{{"audio": "ref.wav", "text": "Transcript of ref.wav"}}])
```

Explicit objects, for batching, streaming and long text:

```python
import transformers_fish_s2
from transformers import AutoModelForTextToWaveform, AutoProcessor

model = AutoModelForTextToWaveform.from_pretrained("{repo}", dtype="auto", device_map="cuda")
processor = AutoProcessor.from_pretrained("{repo}")
processor.codec.to(model.device)
inputs = processor("Hello from Fish Audio S2!").to(model.device)
codes = model.generate(**inputs)
processor.save_audio(processor.decode(codes), "hello.wav")
```

Command line: `fish-s2 speak "Hello" --model {repo} -o hello.wav`.

## Model

| | |
|---|---|
| parameters | {parameters:,} ({model.dtype}) |
| slow AR | {slow_ar} |
| fast AR | {fast.n_layer} layers, width {fast.dim}, {config.num_codebooks} codebooks per frame |
| audio | {audio} |

Generation defaults (`generation_config.json`):

| option | value |
|---|---|
{generation_rows}

## License

The model weights are released by Fish Audio under the **{WEIGHTS_LICENSE}**
([LICENSE]({WEIGHTS_LICENSE_URL})), which restricts their use; read it before use. The `{PACKAGE}` code is
Apache-2.0.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def save_for_hub(
    model: FishS2ForConditionalGeneration,
    processor: FishS2Processor | None,
    save_directory: str | os.PathLike,
    *,
    repo_id: str | None = None,
    base_model: str | None = DEFAULT_MODEL_ID,
    **save_kwargs,
) -> Path:
    """Write a complete checkpoint folder: ``model.save_pretrained`` (config, ``generation_config.json``,
    safetensors), ``processor.save_pretrained`` (tokenizer, ``processor_config.json``, ``codec/``) and
    ``README.md`` from :func:`model_card`. It loads offline with ``AutoModelForTextToWaveform``,
    ``AutoProcessor`` and ``pipeline("text-to-speech")``."""
    directory = Path(save_directory)
    model.save_pretrained(directory, **save_kwargs)
    if processor is not None:  # ``model.push_to_hub`` without a processor uploads the model alone
        processor.save_pretrained(directory, **{k: v for k, v in save_kwargs.items() if k == "max_shard_size"})
    model_card(model, processor, repo_id=repo_id, base_model=base_model).save(directory / "README.md")
    return directory


def push_to_hub(
    model: FishS2ForConditionalGeneration,
    processor: FishS2Processor | None,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload Fish S2 model, processor and model card",
    base_model: str | None = DEFAULT_MODEL_ID,
    max_shard_size: str | int = "5GB",
) -> CommitInfo:
    """Upload model, processor (when given) and model card to ``repo_id`` in one commit (creating the repo if
    needed). ``model.push_to_hub(repo_id, processor=...)`` calls this."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with hub_errors(repo_id, action="upload"):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            save_for_hub(
                model,
                processor,
                folder,
                repo_id=repo_id,
                base_model=base_model,
                max_shard_size=max_shard_size,
            )
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
            )
