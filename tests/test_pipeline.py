"""pipeline("text-to-speech") on the tiny fixture: from a saved folder and from objects, voice cloning and
generation options passed through, real batches, long-form text, chats, no side effects on a later plain
``model.generate()``, and the stock pipeline unchanged for other models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import EXPECTED, TINY
from transformers import pipeline
from transformers.pipelines.text_to_audio import TextToAudioPipeline

from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor, generate_long
from transformers_fish_s2.hub import save_for_hub
from transformers_fish_s2.pipeline import FishS2TextToSpeechPipeline

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

    # a voice per text: one conversation each, batched like texts
    plain = [{"role": "0", "content": SECOND}]
    both = tts([chat, plain], batch_size=2, generate_kwargs=GREEDY)
    np.testing.assert_array_equal(both[0]["audio"], expected)
    np.testing.assert_array_equal(both[1]["audio"], direct(model, processor, SECOND, **GREEDY)[0])


@pytest.fixture
def generate_calls(model, monkeypatch):
    """The batch size of every ``model.generate`` call made while the test runs."""
    calls = []
    generate = model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs.get("input_ids", args[0] if args else None).shape[0])
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    return calls


def test_objects_need_no_tokenizer_and_references_are_a_call_option(model, processor):
    tts = pipeline("text-to-speech", model=model, processor=processor)
    assert type(tts) is FishS2TextToSpeechPipeline and tts.tokenizer is processor.tokenizer
    with pytest.raises(ValueError, match=r"needs the FishS2Processor of .*: pass processor=FishS2Processor"):
        pipeline("text-to-speech", model=model)  # a model object alone names no processor to load

    expected, frames = direct(model, processor, TEXT, [REFERENCE], **GREEDY)
    for out in (
        tts(TEXT, references=[REFERENCE], generate_kwargs=GREEDY),
        tts(TEXT, references=REFERENCE, generate_kwargs=GREEDY),  # one dict: one voice
        pipeline("text-to-speech", model=model, processor=processor, references=[REFERENCE])(
            TEXT, generate_kwargs=GREEDY
        ),  # set once for every call
    ):
        check_audio(out, frames)
        np.testing.assert_array_equal(out["audio"], expected)


def test_device_moves_the_codec_with_the_model(model, processor, monkeypatch):
    moved = []
    monkeypatch.setattr(processor.codec, "to", lambda *args, **kwargs: moved.append(args))
    tts = pipeline("text-to-speech", model=model, processor=processor, device="cpu")
    assert moved == [(tts.device,)] and tts.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_cuda_runs_model_and_codec_there(processor):
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()
    tts = pipeline(
        "text-to-speech", model=model, processor=FishS2Processor.from_pretrained(TINY), device="cuda"
    )
    assert tts.model.device.type == tts.processor.codec.device.type == "cuda"
    out = tts(TEXT, references=[REFERENCE], generate_kwargs=GREEDY)
    assert out["audio"].dtype == np.float32 and out["audio"].size > 0


def test_a_list_is_batched_for_real_and_equals_one_by_one(model, processor, generate_calls):
    """batch_size=3 over 4 texts: two generate calls (3 rows, then 1), each row's greedy audio exactly (tolerance 0)
    the one-by-one audio, the text that ends at once (zero frames) included."""
    texts = [TEXT, SECOND, "Short one.", "Another sentence here, a bit longer than the others."]
    tts = pipeline("text-to-speech", model=model, processor=processor)
    alone = [tts(text, generate_kwargs=GREEDY)["audio"] for text in texts]
    assert generate_calls == [1, 1, 1, 1]
    generate_calls.clear()

    batched = tts(texts, batch_size=3, generate_kwargs=GREEDY)
    assert generate_calls == [3, 1]
    assert [out["audio"].shape for out in batched] == [audio.shape for audio in alone]
    assert alone[2].shape == (0,)  # the tiny model ends this one at once: empty audio, not an error
    for out, audio in zip(batched, alone):
        np.testing.assert_array_equal(out["audio"], audio)


def test_long_text_is_spoken_chunk_by_chunk_unless_turned_off(model, processor, generate_calls):
    story = " ".join(f"Sentence number {i} of the story." for i in range(6))
    chunking = {"chunk_length": 70}
    chunks = processor.chunk_text(story, split_sentences=True, **chunking)
    assert len(chunks) == 3
    tts = pipeline("text-to-speech", model=model, processor=processor)

    out = tts(story, generate_kwargs=GREEDY, **chunking)
    assert generate_calls == [1, 1, 1]  # one call per chunk
    expected = generate_long(model, processor, story, split_sentences=True, **chunking, **GREEDY)
    frames = int(expected.lengths[0])
    check_audio(out, frames)
    assert frames > GREEDY["max_new_tokens"]  # longer than one generate call may make
    np.testing.assert_array_equal(out["audio"], processor.decode(expected, return_tensors="np"))

    generate_calls.clear()
    whole, whole_frames = direct(model, processor, story, **GREEDY)
    out = tts(
        story, generate_kwargs=GREEDY, split_sentences=False, **chunking
    )  # the stock behaviour: one call
    assert generate_calls == [1, 1]  # direct's, then the pipeline's
    check_audio(out, whole_frames)
    np.testing.assert_array_equal(out["audio"], whole)

    with pytest.raises(
        ValueError, match=r"processor_kwargs \['allow_control_tokens'\] apply to a text spoken as one"
    ):
        tts(story, processor_kwargs={"allow_control_tokens": True}, **chunking)


def test_other_models_get_the_stock_pipeline_unchanged(tmp_path):
    """A tiny random VITS built here: the same pipeline class, audio and errors as transformers' own class."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer
    from transformers.pipelines import PIPELINE_REGISTRY

    from transformers_fish_s2 import register_auto_classes
    from transformers_fish_s2.pipeline import TextToAudioPipelineDispatch

    register_auto_classes()  # again: idempotent, the fallback stays transformers' class
    assert PIPELINE_REGISTRY.supported_tasks["text-to-audio"]["impl"] is TextToAudioPipelineDispatch
    assert TextToAudioPipelineDispatch.fallback is TextToAudioPipeline

    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate(" abcdefghijklmnopqrstuvwxyz")}))
    tokenizer = VitsTokenizer(str(vocab), add_blank=False, normalize=False, phonemize=False)
    config = VitsConfig(
        vocab_size=27, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=16, flow_size=8,
        spectrogram_bins=9, upsample_initial_channel=16, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]], prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1, duration_predictor_num_flows=1,
        duration_predictor_filter_channels=8, depth_separable_num_layers=1, sampling_rate=8000,
    )  # fmt: skip
    torch.manual_seed(0)
    vits = VitsModel(config).eval()

    outputs = []
    for stock in ({}, {"pipeline_class": TextToAudioPipeline}):
        tts = pipeline("text-to-speech", model=vits, tokenizer=tokenizer, **stock)
        assert type(tts) is TextToAudioPipeline
        torch.manual_seed(1)
        outputs.append(tts("hello world"))
        with pytest.raises(Exception, match="Impossible to guess which tokenizer to use"):
            pipeline("text-to-speech", model=vits, **stock)
    assert outputs[0]["sampling_rate"] == outputs[1]["sampling_rate"] == 8000
    assert outputs[0]["audio"].size > 0
    np.testing.assert_array_equal(outputs[0]["audio"], outputs[1]["audio"])

    vits.save_pretrained(tmp_path / "vits")  # a folder without tokenizer files: the tokenizer's own error
    errors = []
    for stock in ({}, {"pipeline_class": TextToAudioPipeline}):
        with pytest.raises(Exception) as error:
            pipeline("text-to-speech", model=str(tmp_path / "vits"), **stock)
        errors.append((type(error.value), str(error.value)))
    assert errors[0] == errors[1] and errors[0][0] is TypeError
