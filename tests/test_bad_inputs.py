"""Bad-input matrix over the public API: processor, generate, codec, pipeline and CLI.

One row per bad input. Each row names the exception type and a pattern its message must match; the pattern
always contains the argument's name and, where there is one, its allowed range, so a row fails both when
the input is accepted and when it fails deep inside torch with a message a user cannot act on. CLI rows also
check that no file was left behind (not even a partial one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import EXPECTED, TINY
from transformers import GenerationConfig, pipeline

from transformers_fish_s2 import FishS2ForConditionalGeneration, FishS2Processor
from transformers_fish_s2.cli import main

TEXT = "Nice to meet you. How are you today?"
CODES = torch.zeros(10, 3, dtype=torch.long)  # a valid [num_codebooks, frames] block for the tiny fixture
WAV = str(EXPECTED / "test_waveform_44k1_pcm16.wav")
VOCAB, CODEBOOK, CONTEXT = 512, 64, 512  # the tiny fixture's text vocabulary, codebook size and context


@dataclass(frozen=True)
class Bad:
    call: Callable[[SimpleNamespace], object]
    error: type[BaseException]
    match: str


@pytest.fixture(scope="module")
def env() -> Iterator[SimpleNamespace]:
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32)
    processor = FishS2Processor.from_pretrained(TINY)
    prompt = processor(TEXT)

    def generate(**overrides):
        kwargs = {**prompt, "max_new_tokens": 2, **overrides}
        return model.generate(**kwargs)

    def process(text=TEXT, **kwargs):
        return processor(text, **kwargs)

    def reference(**fields):
        return processor("Hello.", references=[{"text": "A reference.", **fields}])

    tts = pipeline("text-to-speech", model=model, processor=processor)
    yield SimpleNamespace(
        model=model,
        processor=processor,
        codec=processor.codec,
        ids=prompt["input_ids"],
        codes=prompt["audio_codes"],
        mask=prompt["attention_mask"],
        generate=generate,
        process=process,
        reference=reference,
        tts=tts,
    )


# ---------------------------------------------------------------------------------------------------------
# generate()
# ---------------------------------------------------------------------------------------------------------

GENERATE = {
    "input_ids is a list": Bad(lambda e: e.generate(input_ids=e.ids.tolist()), ValueError, r"input_ids must be a non-empty \[batch, seq_len\] tensor"),
    "input_ids is 1-D": Bad(lambda e: e.generate(input_ids=e.ids[0]), ValueError, r"input_ids must be a non-empty \[batch, seq_len\]"),
    "input_ids is 3-D": Bad(lambda e: e.generate(input_ids=e.ids[None]), ValueError, r"input_ids must be a non-empty \[batch, seq_len\]"),
    "input_ids has no positions": Bad(lambda e: e.generate(input_ids=e.ids[:, :0], audio_codes=None, attention_mask=None), ValueError, r"input_ids must be a non-empty"),
    "input_ids is float": Bad(lambda e: e.generate(input_ids=e.ids.float()), ValueError, r"input_ids must hold integer token ids"),
    "input_ids is bool": Bad(lambda e: e.generate(input_ids=e.ids.bool()), ValueError, r"input_ids must hold integer token ids"),
    "input_ids on the meta device": Bad(lambda e: e.generate(input_ids=e.ids.to("meta")), ValueError, r"input_ids .*meta"),
    "empty batch": Bad(lambda e: e.generate(input_ids=e.ids[:0], audio_codes=e.codes[:0], attention_mask=e.mask[:0]), ValueError, r"input_ids .*batch"),
    "input_ids negative": Bad(lambda e: e.generate(input_ids=e.ids.clone().fill_(-1)), ValueError, rf"input_ids .*outside the vocabulary \[0, {VOCAB}\)"),
    "input_ids beyond the vocabulary": Bad(lambda e: e.generate(input_ids=e.ids.clone().fill_(VOCAB)), ValueError, rf"input_ids .*outside the vocabulary \[0, {VOCAB}\)"),
    "audio_codes batch 2 vs input_ids batch 1": Bad(lambda e: e.generate(audio_codes=e.codes.repeat(2, 1, 1)), ValueError, r"audio_codes must be \[batch, num_codebooks, seq_len\] = \[1, 10, \d+\]"),
    "attention_mask batch 2 vs input_ids batch 1": Bad(lambda e: e.generate(attention_mask=e.mask.repeat(2, 1)), ValueError, r"attention_mask must be \[batch, seq_len\] = \[1, \d+\]"),
    "input_ids batch 2 vs the others batch 1": Bad(lambda e: e.generate(input_ids=e.ids.repeat(2, 1)), ValueError, r"audio_codes must be \[batch, num_codebooks, seq_len\] = \[2, 10, \d+\]"),
    "audio_codes with 9 codebooks": Bad(lambda e: e.generate(audio_codes=e.codes[:, :9]), ValueError, r"audio_codes must be \[batch, num_codebooks, seq_len\]"),
    "attention_mask one position short": Bad(lambda e: e.generate(attention_mask=e.mask[:, 1:]), ValueError, r"attention_mask must be \[batch, seq_len\]"),
    "audio_codes negative": Bad(lambda e: e.generate(audio_codes=e.codes.clone().fill_(-1)), ValueError, rf"audio_codes .*outside \[0, {CODEBOOK}\)"),
    "audio_codes beyond the codebook": Bad(lambda e: e.generate(audio_codes=e.codes.clone().fill_(CODEBOOK)), ValueError, rf"audio_codes .*outside \[0, {CODEBOOK}\)"),
    "audio_codes is float": Bad(lambda e: e.generate(audio_codes=e.codes.float()), ValueError, r"audio_codes must hold integer codes"),
    "audio_codes is a list": Bad(lambda e: e.generate(audio_codes=e.codes.tolist()), TypeError, r"audio_codes must be a tensor"),
    "attention_mask is a list": Bad(lambda e: e.generate(attention_mask=e.mask.tolist()), TypeError, r"attention_mask must be a tensor"),
    "attention_mask holds 2": Bad(lambda e: e.generate(attention_mask=e.mask * 2), ValueError, r"attention_mask must hold only 0 \(padding\) and 1"),
    "attention_mask right-padded": Bad(lambda e: e.generate(attention_mask=torch.cat([e.mask[:, :-1], torch.zeros_like(e.mask[:, :1])], 1)), ValueError, r"left padding: every row of attention_mask must be 0…0 1…1"),
    "attention_mask all padding": Bad(lambda e: e.generate(attention_mask=torch.zeros_like(e.mask)), ValueError, r"attention_mask must be 0…0 1…1"),
    "prompt fills the context": Bad(lambda e: e.generate(input_ids=torch.full((1, CONTEXT), 5), audio_codes=None, attention_mask=None), ValueError, rf"prompt is {CONTEXT} tokens but the model context \(text_config.max_seq_len\) is {CONTEXT}"),
    "max_new_tokens=0": Bad(lambda e: e.generate(max_new_tokens=0), ValueError, r"max_new_tokens must be a positive integer, got 0"),
    "max_new_tokens=-1": Bad(lambda e: e.generate(max_new_tokens=-1), ValueError, r"max_new_tokens must be a positive integer, got -1"),
    "max_new_tokens=2.5": Bad(lambda e: e.generate(max_new_tokens=2.5), ValueError, r"max_new_tokens must be a positive integer"),
    "max_new_tokens='2'": Bad(lambda e: e.generate(max_new_tokens="2"), ValueError, r"max_new_tokens must be a positive integer"),
    "temperature=0 with sampling": Bad(lambda e: e.generate(temperature=0.0), ValueError, r"temperature must be > 0 when sampling"),
    "temperature=-1": Bad(lambda e: e.generate(temperature=-1.0), ValueError, r"temperature must be > 0 when sampling"),
    "temperature=nan": Bad(lambda e: e.generate(temperature=float("nan")), ValueError, r"temperature must be > 0 when sampling"),
    "temperature='hot'": Bad(lambda e: e.generate(temperature="hot"), ValueError, r"temperature must be > 0"),
    "top_p=0": Bad(lambda e: e.generate(top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
    "top_p=-0.1": Bad(lambda e: e.generate(top_p=-0.1), ValueError, r"top_p must be in \(0, 1\]"),
    "top_p=1.5": Bad(lambda e: e.generate(top_p=1.5), ValueError, r"top_p must be in \(0, 1\]"),
    "top_p=nan": Bad(lambda e: e.generate(top_p=float("nan")), ValueError, r"top_p must be in \(0, 1\]"),
    "top_k=-1": Bad(lambda e: e.generate(top_k=-1), ValueError, r"top_k must be an integer >= 0 \(0 disables it\)"),
    "top_k=2.5": Bad(lambda e: e.generate(top_k=2.5), ValueError, r"top_k must be an integer >= 0"),
    "repetition_penalty=0": Bad(lambda e: e.generate(repetition_penalty=0.0), ValueError, r"repetition_penalty must be > 0"),
    "ras_temperature=0": Bad(lambda e: e.generate(ras_temperature=0.0), ValueError, r"ras_temperature must be > 0"),
    "ras_top_p=2": Bad(lambda e: e.generate(ras_top_p=2.0), ValueError, r"ras_top_p must be in \(0, 1\]"),
    "ras_window_size=-1": Bad(lambda e: e.generate(ras_window_size=-1), ValueError, r"ras_window_size must be an integer in \[0, 1024\] \(MAX_RAS_WINDOW_SIZE\), got -1"),
    "num_beams=2": Bad(lambda e: e.generate(num_beams=2), ValueError, r"does not support \['num_beams'\]"),
    "num_return_sequences=2": Bad(lambda e: e.generate(num_return_sequences=2), ValueError, r"does not support \['num_return_sequences'\]"),
    "unsupported min_new_tokens": Bad(lambda e: e.generate(min_new_tokens=3), ValueError, r"does not support \['min_new_tokens'\]"),
    "unknown keyword": Bad(lambda e: e.generate(temprature=0.5), TypeError, r"unexpected keyword argument\(s\) \['temprature'\]"),
    "generation_config is a dict": Bad(lambda e: e.generate(generation_config={"do_sample": False}), TypeError, r"generation_config must be a .*GenerationConfig"),
    "generation_config with top_p=2": Bad(lambda e: e.generate(generation_config=GenerationConfig(top_p=2.0, do_sample=True)), ValueError, r"top_p must be in \(0, 1\]"),
    "stop_check_interval=0": Bad(lambda e: e.generate(stop_check_interval=0), ValueError, r"stop_check_interval must be a positive integer, got 0"),
    "do_sample='yes'": Bad(lambda e: e.generate(do_sample="yes"), ValueError, r"do_sample must be True or False, got 'yes'"),
    "streamer with batch 2": Bad(lambda e: e.model.generate(input_ids=e.ids.repeat(2, 1), max_new_tokens=2, streamer=object()), ValueError, r"streaming supports batch size 1, got 2"),
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------
# FishS2Processor: text, references, decoding, saving
# ---------------------------------------------------------------------------------------------------------

PROCESSOR = {
    "text=None": Bad(lambda e: e.process(None), TypeError, r"text must be a str or a list of str, got NoneType"),
    "text=5": Bad(lambda e: e.process(5), TypeError, r"text must be a str or a list of str, got int"),
    "text=''": Bad(lambda e: e.process(""), ValueError, r"text is empty or only whitespace"),
    "text whitespace": Bad(lambda e: e.process(" \n\t "), ValueError, r"text is empty or only whitespace"),
    "text=[]": Bad(lambda e: e.process([]), ValueError, r"text is an empty list"),
    "text list holding an int": Bad(lambda e: e.process(["Hi.", 3]), TypeError, r"text\[1\] must be a str, got int"),
    "text with <|im_end|>": Bad(lambda e: e.process("Hi <|im_end|>"), ValueError, r"text contains the reserved token '<\|im_end\|>'"),
    "text with <|semantic:3|>": Bad(lambda e: e.process("Hi <|semantic:3|>"), ValueError, r"text contains the reserved token '<\|semantic:3\|>'"),
    "text with a malformed speaker tag": Bad(lambda e: e.process("<|speaker:x|>Hi"), ValueError, r"text has a malformed speaker tag .*expected <\|speaker:N\|> with N a non-negative integer"),
    "text with only speaker tags": Bad(lambda e: e.process("<|speaker:0|> <|speaker:1|>"), ValueError, r"text has only speaker tags"),
    "text with a lone surrogate": Bad(lambda e: e.process("Hi \ud800"), ValueError, r"text is not valid Unicode text"),
    "text longer than the context": Bad(lambda e: e.process("hello " * 2000), ValueError, rf"the prompt is \d+ tokens but the model context is {CONTEXT} tokens \(max_length\)"),
    "return_tensors='tf'": Bad(lambda e: e.process(return_tensors="tf"), ValueError, r"return_tensors must be 'pt' or 'np'"),
    "unknown keyword": Bad(lambda e: e.process(padding=True), TypeError, r"unexpected keyword argument\(s\) \['padding'\]"),
    "references of the wrong kind": Bad(lambda e: e.process(references=["voice.wav"]), TypeError, r"references must be a list of dicts"),
    "references per item, wrong count": Bad(lambda e: e.process(["a.", "b."], references=[[{"text": "x", "codes": CODES}]]), ValueError, r"references has one entry per batch item but 1 entries for 2 text"),
    "reference without text": Bad(lambda e: e.processor("Hi.", references=[{"codes": CODES}]), ValueError, r"references\[0\] has no 'text'"),
    "reference with empty text": Bad(lambda e: e.reference(codes=CODES, text=""), ValueError, r"references\[0\]\['text'\] is empty"),
    "reference without audio or codes": Bad(lambda e: e.reference(), ValueError, r"references\[0\] has a transcript but no 'audio' or 'codes'"),
    "reference with audio and codes": Bad(lambda e: e.reference(audio=WAV, codes=CODES), ValueError, r"references\[0\] has both 'audio' and 'codes'"),
    "reference with an unknown key": Bad(lambda e: e.reference(codes=CODES, speaker=1), ValueError, r"references\[0\] has unknown key\(s\) \['speaker'\]"),
    "reference codes float": Bad(lambda e: e.reference(codes=CODES.float()), TypeError, r"references\[0\]\['codes'\] must be an integer tensor"),
    "reference codes a list": Bad(lambda e: e.reference(codes=CODES.tolist()), TypeError, r"references\[0\]\['codes'\] must be an integer tensor \[10, T\]"),
    "reference codes [9, T]": Bad(lambda e: e.reference(codes=CODES[:9]), ValueError, r"references\[0\]\['codes'\] must have shape \[10, T\] with T >= 1"),
    "reference codes [10, 0]": Bad(lambda e: e.reference(codes=CODES[:, :0]), ValueError, r"references\[0\]\['codes'\] must have shape \[10, T\] with T >= 1"),
    "reference codes negative": Bad(lambda e: e.reference(codes=CODES - 1), ValueError, r"references\[0\]\['codes'\] has negative codes"),
    "reference semantic code too big": Bad(lambda e: e.reference(codes=CODES + CODEBOOK), ValueError, rf"references\[0\]\['codes'\] row 0 \(semantic codebook\) .*out of range \[0, {CODEBOOK}\)"),
    "reference residual code too big": Bad(lambda e: e.reference(codes=torch.cat([CODES[:1], CODES[1:] + 32])), ValueError, r"references\[0\]\['codes'\] rows 1..9 \(residual codebooks\) .*out of range \[0, 32\)"),
    "reference codes with sampling_rate": Bad(lambda e: e.reference(codes=CODES, sampling_rate=44100), ValueError, r"references\[0\]: 'sampling_rate' only applies to 'audio'"),
    "reference audio file missing": Bad(lambda e: e.reference(audio="/nonexistent/voice.wav"), FileNotFoundError, r"references\[0\]\['audio'\]: audio file not found: '/nonexistent/voice.wav'"),
    "reference audio array without rate": Bad(lambda e: e.reference(audio=np.zeros(100, np.float32)), ValueError, r"references\[0\]\['audio'\]: sampling_rate is required"),
    "reference audio with 0 samples": Bad(lambda e: e.reference(audio=np.zeros(0, np.float32), sampling_rate=44100), ValueError, r"references\[0\]\['audio'\] has no samples"),
    "reference audio with NaN": Bad(lambda e: e.reference(audio=np.full(100, np.nan, np.float32), sampling_rate=44100), ValueError, r"references\[0\]\['audio'\] contains 100 NaN or infinite"),
    "reference audio 3-D": Bad(lambda e: e.reference(audio=np.zeros((1, 1, 100), np.float32), sampling_rate=44100), ValueError, r"references\[0\]\['audio'\] must be 1-D \[samples\] or 2-D \[channels, samples\]"),
    "reference audio complex": Bad(lambda e: e.reference(audio=np.zeros(100, np.complex64), sampling_rate=44100), TypeError, r"references\[0\]\['audio'\] must be a float \(or signed integer PCM\) waveform"),
    "reference audio unsigned PCM": Bad(lambda e: e.reference(audio=np.zeros(100, np.uint8), sampling_rate=44100), TypeError, r"references\[0\]\['audio'\] must be a float \(or signed integer PCM\)"),
    "reference audio bytes not audio": Bad(lambda e: e.reference(audio=b"RIFF but not really"), ValueError, r"references\[0\]\['audio'\]: cannot read audio from the given bytes"),
    "reference audio of the wrong type": Bad(lambda e: e.reference(audio=3.5), TypeError, r"references\[0\]\['audio'\] must be a file path, file bytes, a numpy array or a torch tensor"),
    "reference sampling_rate=-5": Bad(lambda e: e.reference(audio=np.zeros(100, np.float32), sampling_rate=-5), ValueError, r"sampling_rate must be positive, got -5"),
    "reference sampling_rate=44100.0": Bad(lambda e: e.reference(audio=np.zeros(100, np.float32), sampling_rate=44100.0), TypeError, r"sampling_rate must be an int \(Hz\)"),
    "reference sampling_rate for a file, disagreeing": Bad(lambda e: e.reference(audio=WAV, sampling_rate=16000), ValueError, r"sampling_rate=16000 was given but the file is at 44100 Hz"),
    "reference audio 11 minutes": Bad(lambda e: e.reference(audio=np.zeros(660, np.float32), sampling_rate=1), ValueError, r"references\[0\]\['audio'\] is 660.0 s long; .* the model context is 512 tokens \(max_length\)"),
    "decode float codes": Bad(lambda e: e.processor.decode(CODES.float()), TypeError, r"audio_codes\[0\] must be an integer tensor"),
    "decode [9, T] codes": Bad(lambda e: e.processor.decode(CODES[:9]), ValueError, r"audio_codes\[0\] must have shape \[10, T\]"),
    "decode 1-D codes": Bad(lambda e: e.processor.decode(CODES[0]), ValueError, r"audio_codes must be \[10, N\] or \[B, 10, N\], got \[3\]"),
    "decode a string": Bad(lambda e: e.processor.decode("codes"), ValueError, r"audio_codes must be \[10, N\] or \[B, 10, N\], got str"),
    "decode negative codes": Bad(lambda e: e.processor.decode(CODES - 1), ValueError, r"audio_codes\[0\] has negative codes"),
    "decode an empty list": Bad(lambda e: e.processor.decode([]), ValueError, r"audio_codes is an empty list"),
    "decode two rows": Bad(lambda e: e.processor.decode(CODES.repeat(2, 1, 1)), ValueError, r"decode\(\) decodes one row, got 2 rows; processor\.batch_decode"),
    "batch_decode lengths, one missing": Bad(lambda e: e.processor.batch_decode(CODES.repeat(2, 1, 1), lengths=[1]), ValueError, r"lengths must give one frame count in \[0, 3\] per row \(2 rows\)"),
    "batch_decode lengths beyond the frames": Bad(lambda e: e.processor.batch_decode(CODES.repeat(2, 1, 1), lengths=[1, 5]), ValueError, r"lengths must give one frame count in \[0, 3\]"),
    "decode a list with lengths": Bad(lambda e: e.processor.decode([CODES], lengths=[1]), ValueError, r"lengths is only for a \[B, C, N\] tensor"),
    "decode return_tensors='tf'": Bad(lambda e: e.processor.decode(CODES, return_tensors="tf"), ValueError, r"return_tensors must be 'pt' or 'np'"),
    "chunk_text chunk_length=0": Bad(lambda e: e.processor.chunk_text("<|speaker:0|>Hi.", chunk_length=0), ValueError, r"chunk_length must be a positive number of UTF-8 bytes"),
    "from_pretrained unknown keyword": Bad(lambda e: FishS2Processor.from_pretrained(TINY, padding_side="left"), TypeError, r"from_pretrained got unexpected keyword argument\(s\) \['padding_side'\]"),
    "from_pretrained missing folder": Bad(lambda e: FishS2Processor.from_pretrained("/nonexistent/s2"), OSError, r"/nonexistent/s2"),
}  # fmt: skip


def save(env: SimpleNamespace, audio, name: str) -> None:
    env.processor.save_audio(audio, env.tmp / name)


SAVE_AUDIO = {
    "save_audio unknown extension": Bad(lambda e: save(e, np.zeros(10, np.float32), "voice.aac"), ValueError, r"cannot tell the audio format from .*voice.aac'; use one of the extensions"),
    "save_audio NaN samples": Bad(lambda e: save(e, np.full(10, np.nan, np.float32), "voice.wav"), ValueError, r"audio contains 10 NaN or infinite"),
    "save_audio 3-D": Bad(lambda e: save(e, np.zeros((2, 2, 10), np.float32), "voice.wav"), ValueError, r"audio must be 1-D \[samples\] or 2-D"),
    "save_audio missing folder": Bad(lambda e: save(e, np.zeros(10, np.float32), "missing/voice.wav"), FileNotFoundError, r"cannot write .*voice.wav': folder .*missing' does not exist"),
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------
# FishS2CodecModel
# ---------------------------------------------------------------------------------------------------------

CODEC = {
    "encode a list": Bad(lambda e: e.codec.encode([0.0] * 100), TypeError, r"input_values must be a torch.Tensor, got list"),
    "encode integer audio": Bad(lambda e: e.codec.encode(torch.zeros(1, 100, dtype=torch.long)), TypeError, r"input_values must be float audio in \[-1, 1\]"),
    "encode 4-D audio": Bad(lambda e: e.codec.encode(torch.zeros(1, 1, 1, 100)), ValueError, r"input_values must be mono audio of shape \[batch, samples\] or \[batch, 1, samples\]"),
    "encode stereo": Bad(lambda e: e.codec.encode(torch.zeros(1, 2, 100)), ValueError, r"input_values must be mono audio"),
    "encode 0 samples": Bad(lambda e: e.codec.encode(torch.zeros(1, 0)), ValueError, r"input_values is empty \(0 samples\)"),
    "encode an empty batch": Bad(lambda e: e.codec.encode(torch.zeros(0, 100)), ValueError, r"input_values has batch size 0 .*batch must be >= 1"),
    "encode NaN audio": Bad(lambda e: e.codec.encode(torch.full((1, 100), float("nan"))), ValueError, r"input_values contains NaN or infinite samples"),
    "encode padding_mask batch 2 vs 1": Bad(lambda e: e.codec.encode(torch.zeros(1, 100), padding_mask=torch.ones(2, 100)), ValueError, r"padding_mask must be a \[batch, samples\] = \(1, 100\) tensor"),
    "encode padding_mask a list": Bad(lambda e: e.codec.encode(torch.zeros(1, 100), padding_mask=[1] * 100), ValueError, r"padding_mask must be a \[batch, samples\]"),
    "decode a list": Bad(lambda e: e.codec.decode([[0]]), TypeError, r"audio_codes must be a torch.Tensor, got list"),
    "decode float codes": Bad(lambda e: e.codec.decode(torch.zeros(1, 10, 3)), TypeError, r"audio_codes must be an integer tensor"),
    "decode [10, T] without batch": Bad(lambda e: e.codec.decode(CODES), ValueError, r"audio_codes must have shape \[batch, 10, frames\].*add a batch dimension"),
    "decode 9 codebooks": Bad(lambda e: e.codec.decode(CODES[None, :9]), ValueError, r"audio_codes must have shape \[batch, 10, frames\]"),
    "decode negative codes": Bad(lambda e: e.codec.decode(CODES[None] - 1), ValueError, r"audio_codes must be >= 0"),
    "decode an empty batch": Bad(lambda e: e.codec.decode(CODES[None][:0]), ValueError, r"audio_codes has batch size 0 .*batch must be >= 1"),
    "streaming decoder batch_size=0": Bad(lambda e: e.codec.streaming_decoder(0), ValueError, r"batch_size must be a positive integer, got 0"),
    "streaming chunk batch 2 vs 1": Bad(lambda e: e.codec.streaming_decoder(1).decode_chunk(CODES.repeat(2, 1, 1)), ValueError, r"made for batch_size=1, got 2"),
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------
# pipeline("text-to-speech")
# ---------------------------------------------------------------------------------------------------------

PIPELINE = {
    "pipeline text=None": Bad(lambda e: e.tts(None), TypeError, r"text must be a str, a list of str or a conversation, got NoneType"),
    "pipeline text=5": Bad(lambda e: e.tts(5), TypeError, r"text must be a str, a list of str or a conversation, got int"),
    "pipeline text=''": Bad(lambda e: e.tts(""), ValueError, r"text is empty or only whitespace"),
    "pipeline references and a chat": Bad(lambda e: e.tts([{"role": "0", "content": "Hi."}], references=[{"text": "x", "codes": CODES}]), ValueError, r"a conversation carries its own references"),
    "pipeline references per text": Bad(lambda e: e.tts([TEXT, TEXT], references=[[{"text": "x", "codes": CODES}], None]), TypeError, r"references= is a list of reference dicts shared by every text"),
    "pipeline top_p=2": Bad(lambda e: e.tts(TEXT, generate_kwargs={"top_p": 2.0}), ValueError, r"top_p must be in \(0, 1\]"),
    "pipeline temperature=0": Bad(lambda e: e.tts(TEXT, generate_kwargs={"temperature": 0.0}), ValueError, r"temperature must be > 0 when sampling"),
    "pipeline max_new_tokens=0": Bad(lambda e: e.tts(TEXT, generate_kwargs={"max_new_tokens": 0}), ValueError, r"max_new_tokens must be a positive integer, got 0"),
    "pipeline unknown generate kwarg": Bad(lambda e: e.tts(TEXT, generate_kwargs={"beams": 2}), TypeError, r"unexpected keyword argument\(s\) \['beams'\]"),
    "pipeline reference without audio": Bad(lambda e: e.tts(TEXT, preprocess_params={"references": [{"text": "x"}]}), ValueError, r"references\[0\] has a transcript but no 'audio' or 'codes'"),
}  # fmt: skip

API_ROWS = {
    f"{group}: {name}": row
    for group, rows in (
        ("generate", GENERATE),
        ("processor", PROCESSOR),
        ("save_audio", SAVE_AUDIO),
        ("codec", CODEC),
        ("pipeline", PIPELINE),
    )
    for name, row in rows.items()
}


@pytest.mark.parametrize("row", list(API_ROWS.values()), ids=list(API_ROWS))
def test_api_rejects_bad_input_with_a_specific_message(env, tmp_path, row: Bad, request):
    env.tmp = tmp_path
    with pytest.raises(row.error, match=row.match):
        row.call(env)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_max_new_tokens_beyond_the_context_is_capped_with_a_warning(env, caplog):
    """Not an error by design: the shipped default (1024 frames) exceeds small models' context, so generate()
    caps the budget at the free context and says so (docs/reliability.md)."""
    with caplog.at_level("WARNING"):
        output = env.generate(max_new_tokens=10**9, do_sample=False)
    assert re.search(rf"max_new_tokens=1000000000 .*exceeds the model context of {CONTEXT}", caplog.text)
    assert output.sequences.shape[-1] <= CONTEXT - env.ids.shape[1]


# ---------------------------------------------------------------------------------------------------------
# fish-s2 CLI: one line on stderr, exit status 1 (2 for malformed command lines), no file left behind
# ---------------------------------------------------------------------------------------------------------

MODEL = ["--model", str(TINY), "--device", "cpu"]
SPEAK = ["speak", "Hello there.", "-o", "out.wav", *MODEL, "--dtype", "float32", "--max-new-tokens", "2"]

CLI = {
    "--top-p 2": (SPEAK + ["--top-p", "2"], 1, r"--top-p must be in \(0, 1\], got 2.0"),
    "--top-p 2 --stream": (SPEAK + ["--top-p", "2", "--stream"], 1, r"--top-p must be in \(0, 1\], got 2.0"),
    "--temperature 0": (SPEAK + ["--temperature", "0"], 1, r"--temperature must be > 0 when sampling"),
    "--top-k -1": (SPEAK + ["--top-k", "-1"], 1, r"--top-k must be an integer >= 0"),
    "--max-new-tokens 0": (SPEAK + ["--max-new-tokens", "0"], 1, r"--max-new-tokens must be at least 1, got 0"),
    "--chunk-length 0": (SPEAK + ["--chunk-length", "0"], 1, r"--chunk-length must be at least 1, got 0"),
    "--greedy with --temperature": (SPEAK + ["--greedy", "--temperature", "0.5"], 1, r"--greedy .*cannot be combined with \['temperature'\]"),
    "--seed abc": (SPEAK + ["--seed", "abc"], 2, r"argument --seed: invalid int value: 'abc'"),
    "--output out.aac": (["speak", "Hi.", "-o", "out.aac", *MODEL], 1, r"--output 'out.aac': use one of the extensions"),
    "--output in a missing folder": (["speak", "Hi.", "-o", "missing/out.wav", *MODEL], 1, r"--output 'missing/out.wav': folder 'missing' does not exist"),
    "--save-codes codes.bin": (SPEAK + ["--save-codes", "codes.bin"], 1, r"--save-codes 'codes.bin': codes files end in .safetensors"),
    "text with <|im_end|>": (["speak", "Hi <|im_end|>", "-o", "out.wav", *MODEL], 1, r"text to speak contains '<\|im_end\|>', a control token"),
    "empty text": (["speak", " ", "-o", "out.wav", *MODEL], 1, r"the text to speak is empty"),
    "zero-width text": (["speak", "\u200b\u2060", "-o", "out.wav", *MODEL], 1, r"the text to speak is empty"),
    "--output not writable": (["speak", "Hi.", "-o", "/proc/out.wav", *MODEL], 1, r"--output: cannot write '/proc/out.wav'"),
    "--save-codes not writable": (SPEAK + ["--save-codes", "/proc/out.codes.safetensors"], 1, r"--save-codes: cannot write '/proc/out.codes.safetensors'"),
    "--model a file": (["speak", "Hi.", "-o", "out.wav", "--model", "notes.wav", "--device", "cpu"], 1, r"'notes.wav' is a file; pass the checkpoint folder"),
    "text and --text-file": (["speak", "Hi.", "--text-file", "t.txt", "-o", "out.wav", *MODEL], 1, r"either as an argument .* or with --text-file"),
    "--model missing folder": (["speak", "Hi.", "-o", "out.wav", "--model", "/nonexistent/s2", "--device", "cpu"], 1, r"'/nonexistent/s2' is not an existing folder"),
    "--device banana": (["speak", "Hi.", "-o", "out.wav", "--model", str(TINY), "--device", "banana"], 1, r"--device 'banana' is not a device name"),
    "--reference-audio not audio": (SPEAK + ["--reference-audio", "notes.wav", "--reference-text", "x"], 1, r"--reference-audio: cannot read audio from .*notes.wav'"),
    "--reference-audio missing": (SPEAK + ["--reference-audio", "gone.wav", "--reference-text", "x"], 1, r"--reference-audio not found: 'gone.wav'"),
    "--reference-audio without its text": (SPEAK + ["--reference-audio", WAV], 1, r"got 1 --reference-audio and 0 --reference-text"),
    "decode a file that is not safetensors": (["decode", "notes.wav", "-o", "out.wav", *MODEL], 1, r"'notes.wav' is not a safetensors codes file"),
    "encode a file that is not audio": (["encode", "notes.wav", "-o", "out.codes.safetensors", *MODEL], 1, r"cannot read audio from 'notes.wav'"),
    "encode with an empty --text": (["encode", WAV, "--text", " ", "-o", "out.codes.safetensors", *MODEL], 1, r"--text is empty"),
    "memory --max-tokens abc": (["memory", "--max-tokens", "abc"], 2, r"argument --max-tokens: invalid int value"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "status", "match"), list(CLI.values()), ids=[f"cli: {name}" for name in CLI]
)
def test_cli_rejects_bad_input_in_one_line_and_leaves_no_file(
    argv, status, match, tmp_path, monkeypatch, capsys, request
):
    monkeypatch.chdir(tmp_path)
    Path("notes.wav").write_text("these are notes, not audio\n")
    assert main(argv) == status
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(match, error), error
    assert "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.wav"]  # no output, no partial file
