"""``pipeline("text-to-speech")`` for Fish Audio S2: references as call options, real batches, long-form text.

transformers 5.24 builds the pipeline class registered for the task; there is no per-model-type pipeline
registry. So importing ``transformers_fish_s2`` registers :class:`TextToAudioPipelineDispatch` for
``"text-to-audio"`` (``"text-to-speech"`` is its alias): for an S2 model it builds
:class:`FishS2TextToSpeechPipeline`; for any other model it builds the class that was registered before
(transformers' ``TextToAudioPipeline``), with the same arguments, so nothing changes for other models.

What the S2 pipeline adds over the stock one (docs/quickstart.md):

* ``processor=`` is enough: the tokenizer is the processor's, and ``device=`` moves the processor's codec too;
* ``tts(text, references=[...])`` (the processor's reference forms), and chat input as in
  :meth:`~.processing.FishS2Processor.apply_chat_template`;
* a list of texts with ``batch_size=N`` runs one ``generate`` call per batch of N (rows left-padded by the
  processor), each row equal to its one-by-one output under greedy decoding;
* long-form text as in ``fish-s2 speak``: a text that splits into several chunks (sentences, or speaker turns) is
  generated chunk by chunk with :func:`~.processing.generate_long`; ``split_sentences=False`` speaks plain text
  as one chunk, and ``chunk_length`` sets the chunk budget.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.text_to_audio import AudioOutput, TextToAudioPipeline
from transformers.utils.chat_template_utils import Chat

from .checkpoint import pipeline_processor_error
from .modeling import FishS2ForConditionalGeneration
from .modeling.generation_fish_s2 import CODE_PAD_VALUE
from .processing.chat import chat_text_and_references
from .processing.long_form import generate_long
from .processing.processing_fish_s2 import FishS2Processor

TASK = "text-to-audio"


@dataclass(frozen=True)
class PipelineText:
    """One text to speak and its references: what ``preprocess`` hands to ``_forward`` (batched as a list)."""

    text: str
    references: list[dict[str, Any]]


class FishS2TextToSpeechPipeline(TextToAudioPipeline):
    """The text-to-speech pipeline for Fish Audio S2 (see the module docstring for what it adds)."""

    def __init__(
        self,
        *args: Any,
        tokenizer: PreTrainedTokenizerBase | None = None,
        processor: FishS2Processor | None = None,
        **kwargs: Any,
    ):
        model = kwargs.get("model", args[0] if args else None)
        if processor is None:  # transformers' pipeline() carries on without a processor that failed to load
            name = getattr(model, "name_or_path", "")
            reason = pipeline_processor_error(name)
            needs = f"pipeline('text-to-speech') needs the FishS2Processor of {name!r} (tokenizer, prompts, codec)"
            raise ValueError(
                f"{needs}, which failed to load: {reason}"
                if reason
                else f"{needs}: pass processor=FishS2Processor.from_pretrained(...)"
            )
        super().__init__(*args, tokenizer=tokenizer or processor.tokenizer, processor=processor, **kwargs)
        if processor.codec is not None:  # the codec follows the model: encode references and decode there
            processor.codec.to(self.device)

    def _sanitize_parameters(
        self,
        preprocess_params: dict | None = None,
        forward_params: dict | None = None,
        generate_kwargs: dict | None = None,
        processor_kwargs: dict | None = None,
        references: dict | list[dict] | None = None,
        split_sentences: bool | None = None,
        chunk_length: int | None = None,
    ) -> tuple[dict, dict, dict]:
        preprocess = dict(preprocess_params or {})
        if references is not None:
            preprocess["references"] = references
        forward = {"forward_params": forward_params or {}, "generate_kwargs": generate_kwargs or {}}
        forward["processor_kwargs"] = {**preprocess.pop("processor_kwargs", {}), **(processor_kwargs or {})}
        for name, value in (("split_sentences", split_sentences), ("chunk_length", chunk_length)):
            if value is not None:
                forward[name] = value
        return preprocess, forward, {}

    def preprocess(
        self, text: str | Chat, references: dict | list[dict] | None = None
    ) -> dict[str, PipelineText]:
        """The request of one input: a text (with ``references``, shared by every text of the call) or a chat."""
        if isinstance(text, Chat):
            if references is not None:
                raise ValueError(
                    "a conversation carries its own references (turns with audio); drop references="
                )
            text, references = chat_text_and_references(text.messages)
        elif not isinstance(text, str):
            raise TypeError(f"text must be a str, a list of str or a conversation, got {type(text).__name__}")
        if isinstance(references, dict):
            references = [references]
        if references is not None and not (
            isinstance(references, (list, tuple)) and all(isinstance(r, dict) for r in references)
        ):
            raise TypeError(
                "references= is a list of reference dicts shared by every text of the call; for a voice per text "
                "pass conversations (see docs/voice-cloning.md)"
            )
        return {"request": PipelineText(text, list(references or []))}

    def _forward(
        self,
        model_inputs: dict,
        forward_params: dict,
        generate_kwargs: dict,
        processor_kwargs: dict,
        split_sentences: bool = True,
        chunk_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generate the codes of a batch: texts of one chunk in one ``generate`` call, long ones chunk by chunk.

        Returns ``sequences [B, num_codebooks, N]`` (padded with -1 after each row's end) and ``lengths [B]``."""
        requests = model_inputs["request"]
        requests = requests if isinstance(requests, list) else [requests]
        options = self._prepare_generate_kwargs(
            {**forward_params, **generate_kwargs}, return_dict_in_generate=True
        )
        rows: list[torch.Tensor | None] = [None] * len(requests)
        short = []
        for i, request in enumerate(requests):
            chunks = self.processor.chunk_text(
                request.text, chunk_length=chunk_length, split_sentences=split_sentences
            )
            if len(chunks) == 1:
                short.append(i)
                continue
            if processor_kwargs:
                raise ValueError(
                    f"processor_kwargs {sorted(processor_kwargs)} apply to a text spoken as one chunk, but this text "
                    f"splits into {len(chunks)} chunks; pass split_sentences=False or a larger chunk_length"
                )
            output = generate_long(
                self.model, self.processor, request.text, request.references,
                chunk_length=chunk_length, split_sentences=split_sentences, **options,
            )  # fmt: skip
            rows[i] = output.sequences[0, :, : int(output.lengths[0])]
        if short:
            inputs = self.processor(
                [requests[i].text for i in short],
                references=[requests[i].references for i in short],
                **processor_kwargs,
            )
            output = self.model.generate(**inputs.to(self.device), **options)
            for row, i in enumerate(short):
                rows[i] = output.sequences[row, :, : int(output.lengths[row])]
        lengths = torch.tensor([row.shape[1] for row in rows])
        sequences = torch.full(
            (len(rows), self.processor.num_codebooks, int(lengths.max())), CODE_PAD_VALUE, dtype=torch.long
        )
        for i, row in enumerate(rows):
            sequences[i, :, : row.shape[1]] = row
        return {"sequences": sequences, "lengths": lengths}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> AudioOutput:
        """One row's codes (``[1, C, N]`` and its length) as a float32 waveform; zero frames give zero samples.

        The row is cut to its length before decoding, so a row of a batch decodes the same frames as alone."""
        row = model_outputs["sequences"][0, :, : int(model_outputs["lengths"][0])]
        audio = self.processor.decode(row, return_tensors="np")
        return AudioOutput(audio=audio, sampling_rate=self.sampling_rate)


class TextToAudioPipelineDispatch(TextToAudioPipeline):
    """What ``pipeline("text-to-speech")`` builds once ``transformers_fish_s2`` is imported: the S2 pipeline for
    an S2 model, otherwise the class registered before us, built exactly as transformers would build it.

    ``_load_tokenizer`` is ``None`` (load if possible) instead of ``True`` so that an S2 model object needs no
    ``tokenizer=``; for another model a tokenizer that did not load is loaded again here so that its own error
    is raised, as without this package.
    """

    _load_tokenizer = None
    fallback: type = TextToAudioPipeline

    def __new__(cls, *args: Any, **kwargs: Any) -> TextToAudioPipeline:
        model = kwargs.get("model", args[0] if args else None)
        if isinstance(model, FishS2ForConditionalGeneration):
            return FishS2TextToSpeechPipeline(*args, **kwargs)
        if kwargs.get("tokenizer") is None:
            name = getattr(model, "name_or_path", "")
            if not name:
                raise ValueError(
                    "Impossible to guess which tokenizer to use. Please provide a PreTrainedTokenizer class or a "
                    "path/identifier to a pretrained tokenizer."
                )
            kwargs["tokenizer"] = AutoTokenizer.from_pretrained(name)
        return cls.fallback(*args, **kwargs)


def register_text_to_speech_pipeline() -> None:
    """Make ``pipeline("text-to-speech")`` build :class:`TextToAudioPipelineDispatch`; safe to call repeatedly."""
    entry = PIPELINE_REGISTRY.supported_tasks[TASK]
    impl = entry["impl"]
    if isinstance(impl, str):  # transformers names its classes by dotted path and imports them on use
        module, name = impl.rsplit(".", 1)
        impl = getattr(importlib.import_module(module), name)
    if impl is not TextToAudioPipelineDispatch:
        TextToAudioPipelineDispatch.fallback = impl
        entry["impl"] = TextToAudioPipelineDispatch
