"""pipeline("text-to-speech") on the tiny fixture: from a saved folder and from objects, voice cloning and
generation options passed through, and no side effects on a later plain ``model.generate()``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EXPECTED
from transformers import pipeline

from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor
from transformers_fish_s2.hub import save_for_hub

TEXT = "Nice to meet you. How are you today?"  # the tiny model does not end it early: every frame is used
REFERENCE = {
    "text": "The quick brown fox jumps over the lazy dog.",
    "audio": str(EXPECTED / "test_waveform_44k1_pcm16.wav"),
}
SECOND = "Hello! This is a tiny parity test. 你好，世界。"  # ends with <|im_end|> after a few frames
GREEDY = {"do_sample": False, "max_new_tokens": 8}
FRAME_LENGTH = 2048


@pytest.fixture(scope="module")
def saved_dir(model, processor, tmp_path_factory):
    return save_for_hub(model, processor, tmp_path_factory.mktemp("saved"))


def direct(model, processor, text, references=None, **generate_kwargs):
    """Audio and frame count of the same request without the pipeline."""
    output = model.generate(**processor(text, references=references), **generate_kwargs)
    return processor.decode(output).numpy(), int(output.lengths[0])


def check_audio(out: dict, frames: int) -> None:
    assert set(out) == {"audio", "sampling_rate"}
    assert out["sampling_rate"] == 44100
    assert (
        isinstance(out["audio"], np.ndarray) and out["audio"].dtype == np.float32 and out["audio"].ndim == 1
    )
    assert frames > 0
    assert out["audio"].shape == (frames * FRAME_LENGTH,)


def test_pipeline_from_saved_folder_and_from_objects_give_the_direct_greedy_audio(
    model, processor, saved_dir
):
    expected, frames = direct(model, processor, TEXT, **GREEDY)

    from_dir = pipeline("text-to-speech", model=str(saved_dir))
    assert type(from_dir.model) is FishS2ForConditionalGeneration and from_dir.model.dtype == torch.float32
    assert type(from_dir.processor) is FishS2Processor
    out = from_dir(TEXT, generate_kwargs=GREEDY)
    check_audio(out, frames)
    np.testing.assert_array_equal(out["audio"], expected)  # save → reload → pipeline: identical greedy audio

    from_objects = pipeline("text-to-speech", model=model, processor=processor, tokenizer=processor.tokenizer)
    out = from_objects(TEXT, generate_kwargs=GREEDY)
    check_audio(out, frames)
    np.testing.assert_array_equal(out["audio"], expected)

    # a list of texts gives one result per text, each the same as alone
    outs = from_objects([TEXT, SECOND], generate_kwargs=GREEDY)
    assert len(outs) == 2
    np.testing.assert_array_equal(outs[0]["audio"], expected)
    second, second_frames = direct(model, processor, SECOND, **GREEDY)
    assert second_frames < GREEDY["max_new_tokens"]  # ended on its own
    check_audio(outs[1], second_frames)
    np.testing.assert_array_equal(outs[1]["audio"], second)


def test_pipeline_passes_references_and_generation_options_through(model, processor):
    tts = pipeline("text-to-speech", model=model, processor=processor, tokenizer=processor.tokenizer)

    cloned = tts(TEXT, preprocess_params={"references": [REFERENCE]}, generate_kwargs=GREEDY)
    expected, frames = direct(model, processor, TEXT, [REFERENCE], **GREEDY)
    check_audio(cloned, frames)
    np.testing.assert_array_equal(cloned["audio"], expected)
    plain, _ = direct(model, processor, TEXT, **GREEDY)
    assert cloned["audio"].shape != plain.shape or not np.array_equal(cloned["audio"], plain)

    # max_new_tokens caps the frames; options given when building the pipeline apply to every call
    capped = tts(TEXT, generate_kwargs={"do_sample": False, "max_new_tokens": 3})
    check_audio(capped, 3)
    built_greedy = pipeline(
        "text-to-speech", model=model, processor=processor, tokenizer=processor.tokenizer, do_sample=False,
        max_new_tokens=5,
    )  # fmt: skip
    out = built_greedy(TEXT)
    check_audio(out, 5)  # the greedy frames of the longer run, decoded alone (the codec is causal)
    np.testing.assert_allclose(out["audio"], plain[: 5 * FRAME_LENGTH], rtol=0, atol=1e-5)

    # sampling (the shipped default) is reproducible under a seed and differs from greedy
    torch.manual_seed(3)
    first = tts(TEXT, generate_kwargs={"max_new_tokens": 8})["audio"]
    torch.manual_seed(3)
    again = tts(TEXT, generate_kwargs={"max_new_tokens": 8})["audio"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, plain[: len(first)], atol=1e-3)

    with pytest.raises(ValueError, match="num_beams"):  # unsupported options fail loudly, not silently
        tts(TEXT, generate_kwargs={"num_beams": 2})


def test_building_and_using_a_pipeline_leaves_plain_generate_unchanged(model, processor, saved_dir):
    inputs = processor(TEXT)
    config_before = model.config.to_dict()
    generation_before = model.generation_config.to_dict()
    torch.manual_seed(11)
    sampled_before = model.generate(**inputs, max_new_tokens=10).sequences

    for tts in (
        pipeline("text-to-speech", model=model, processor=processor, tokenizer=processor.tokenizer,
                 do_sample=False, temperature=0.3, max_new_tokens=6),
        pipeline("text-to-speech", model=str(saved_dir), top_k=3, max_new_tokens=6),
    ):  # fmt: skip
        tts(TEXT, generate_kwargs={"top_p": 0.5})

    assert model.config.to_dict() == config_before
    assert model.generation_config.to_dict() == generation_before
    assert not model.config._get_generation_parameters()  # nothing written into config.json's fields
    torch.manual_seed(11)
    sampled_after = model.generate(**inputs, max_new_tokens=10).sequences  # defaults: sampling, not greedy
    torch.testing.assert_close(sampled_after, sampled_before, rtol=0, atol=0)


def test_pipeline_clones_voices_from_a_chat_as_csm_users_do(model, processor):
    """A conversation (role = speaker id, a turn with audio = that speaker's reference) is rendered by
    processor.apply_chat_template; the audio equals the same request made with references=."""
    tts = pipeline("text-to-speech", model=model, processor=processor, tokenizer=processor.tokenizer)
    chat = [
        {"role": "0", "content": [{"type": "text", "text": REFERENCE["text"]}, {"type": "audio", "path": REFERENCE["audio"]}]},
        {"role": "0", "content": [{"type": "text", "text": TEXT}]},
    ]  # fmt: skip
    out = tts(chat, generate_kwargs=GREEDY)
    expected, frames = direct(model, processor, TEXT, [REFERENCE], **GREEDY)
    check_audio(out, frames)
    np.testing.assert_array_equal(out["audio"], expected)
