"""generate(): parity with the authors' greedy and seeded sampled runs, batching, compile, caches, config.

Reference frames are ``[token, c0 … c9]`` columns; ours are the codes rows. The reference keeps the final
``<|im_end|>`` frame in ``generated_frames``; we never return it.
"""

from __future__ import annotations

import copy
import json
from unittest import mock

import pytest
import torch
from conftest import TINY, expected_json, expected_tensors
from transformers.generation.configuration_utils import CompileConfig

from transformers_fish_s2.modeling import FishS2Config, FishS2ForConditionalGeneration
from transformers_fish_s2.modeling.generation_fish_s2 import CACHE_LENGTH_BUCKET, CODE_PAD_VALUE
from transformers_fish_s2.modeling.generation_options import (
    FISH_S2_GENERATION_DEFAULTS,
    FishS2GenerationConfig,
)

IM_END = 386
PARAMS = {"A": dict(temperature=0.8, top_p=0.8, top_k=30), "B": dict(temperature=1.0, top_p=0.9, top_k=30)}
GREEDY_CASES = [
    "case1_plain.batch0",
    "case2_clone.batch0",
    "case3_dialogue.batch0",
    "case4_dialogue_multibatch.batch0",
    "case4_dialogue_multibatch.batch1",
]
SAMPLED_RUNS = [
    f"{case}.{params}.seed{seed}.batch0"
    for case in ("case2_clone", "case3_dialogue")
    for params in PARAMS
    for seed in (0, 1234)
]


@pytest.fixture(scope="module")
def prompts() -> dict[str, torch.Tensor]:
    return expected_tensors("prompts")


def test_every_recorded_run_is_checked():
    recorded = expected_tensors("generation")
    assert {f"{name}.generated_frames" for name in GREEDY_CASES} <= recorded.keys()
    assert sorted(f"{run}.generated_frames" for run in SAMPLED_RUNS) == sorted(
        expected_tensors("generation_sampled")
    )


def prompt_inputs(prompts, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    prompt = prompts[f"{name}.prompt"]
    return prompt[0][None], prompt[1:][None]


def expected_codes(frames: torch.Tensor) -> torch.Tensor:
    """The reference's frames up to (not including) the first ``<|im_end|>``, codes rows only."""
    ends = (frames[0] == IM_END).nonzero()
    stop = int(ends[0]) if len(ends) else frames.shape[1]
    return frames[1:, :stop]


def tiny_random_model(
    max_seq_len: int = 512, num_codebooks: int = 4, seed: int = 0
) -> FishS2ForConditionalGeneration:
    config = FishS2Config(
        text_config=dict(
            vocab_size=96, dim=32, n_layer=1, n_head=2, n_local_heads=1, head_dim=16, intermediate_size=64,
            max_seq_len=max_seq_len,
        ),
        audio_decoder_config=dict(
            vocab_size=16, dim=32, n_layer=1, n_head=2, n_local_heads=1, head_dim=16, intermediate_size=64,
            num_codebooks=num_codebooks, text_dim=32,
        ),
        eos_token_id=10, pad_token_id=11, audio_pad_token_id=12, semantic_start_token_id=80, semantic_end_token_id=95,
    )  # fmt: skip
    torch.manual_seed(seed)
    return FishS2ForConditionalGeneration(config).eval()


# ---------------------------------------------------------------------------------------------------------
# Parity with the authors' runs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GREEDY_CASES)
def test_greedy_parity(model, prompts, name):
    frames = expected_tensors("generation")[f"{name}.generated_frames"]
    input_ids, audio_codes = prompt_inputs(prompts, name)
    out = model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=48)
    expected = expected_codes(frames)
    assert torch.equal(out.sequences[0], expected)
    assert out.lengths.tolist() == [expected.shape[1]]
    assert out.eos_reached.item() == bool((frames[0] == IM_END).any())
    if name == "case4_dialogue_multibatch.batch1":
        # The reference checks for <|im_end|> only after decode steps, not after the prefill frame: here its
        # frame 0 is already <|im_end|> and it runs one more frame (also <|im_end|>) and yields frame 0's
        # codes as audio. We stop at the first <|im_end|>, so this chunk has no audio.
        assert frames[0].tolist() == [IM_END, IM_END] and out.lengths.item() == 0
    elif not out.eos_reached.item():
        assert out.lengths.item() == 48  # length stop: every frame kept (the reference drops the last one)


def test_top_k_one_sampling_equals_greedy(model, prompts):
    input_ids, audio_codes = prompt_inputs(prompts, "case2_clone.batch0")
    greedy = model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=48)
    sampled = model.generate(
        input_ids, audio_codes, do_sample=True, top_k=1, top_p=0.9, temperature=1.0, max_new_tokens=48
    )
    assert torch.equal(sampled.sequences, greedy.sequences) and greedy.lengths.item() == 34


@pytest.mark.parametrize("run", SAMPLED_RUNS)
def test_seeded_sampled_parity(model, prompts, run):
    """``torch.manual_seed(S)`` right before generate reproduces the authors' draws, and the generator ends
    where theirs did: 1600 uniforms per frame (512 + 512 + 9 x 64), none after the <|im_end|> frame."""
    frames = expected_tensors("generation_sampled")[f"{run}.generated_frames"]
    case, params, seed = run.split(".")[:3]
    seed = int(seed.removeprefix("seed"))
    input_ids, audio_codes = prompt_inputs(prompts, f"{case}.batch0")

    torch.manual_seed(seed)
    out = model.generate(input_ids, audio_codes, max_new_tokens=48, **PARAMS[params])
    after_run = torch.rand(4)

    expected = expected_codes(frames)
    assert torch.equal(out.sequences[0], expected)
    torch.manual_seed(seed)
    torch.rand(frames.shape[1] * (2 * 512 + 9 * 64))
    assert torch.equal(after_run, torch.rand(4))


def test_shipped_defaults_drive_sampling(model, prompts):
    """Without arguments generate samples with the shipped defaults (= parameter set A, RAS on)."""
    input_ids, audio_codes = prompt_inputs(prompts, "case2_clone.batch0")
    torch.manual_seed(0)
    out = model.generate(input_ids, audio_codes, max_new_tokens=48)
    frames = expected_tensors("generation_sampled")["case2_clone.A.seed0.batch0.generated_frames"]
    assert torch.equal(out.sequences[0], expected_codes(frames))


def test_greedy_draws_no_random_numbers(model, prompts):
    input_ids, audio_codes = prompt_inputs(prompts, "case1_plain.batch0")
    torch.manual_seed(7)
    model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=8)
    after = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(3))


def test_generate_long_case4_end_to_end(model, prompts):
    """Two speaker-turn chunks, the second conditioned on the first's text and codes (iterative prompting).

    The reference drops a length-stopped chunk's last frame before conditioning on it; with
    max_new_tokens=47 our chunk 0 (which keeps all its frames) is exactly what it conditioned on, so chunk 1's
    prompt must be the recorded one, token for token.
    """
    from transformers_fish_s2.processing import FishS2Processor, generate_long

    inputs = expected_json("inputs")
    case = next(c for c in inputs["cases"] if c["name"] == "case4_dialogue_multibatch")
    codes = expected_tensors("inputs")
    references = [
        {"text": r["text"], "codes": codes[r["codes_tensor"].split(":")[1]]} for r in case["references"]
    ]
    processor = FishS2Processor.from_pretrained(TINY, load_codec=False)
    generated = expected_tensors("generation")

    with mock.patch.object(model, "generate", wraps=model.generate) as spy:
        out = generate_long(
            model,
            processor,
            case["text"],
            references,
            chunk_length=case["chunk_length"],
            do_sample=False,
            max_new_tokens=47,
        )
    assert spy.call_count == 2
    for k, call in enumerate(spy.call_args_list):
        prompt = prompts[f"case4_dialogue_multibatch.batch{k}.prompt"]
        assert torch.equal(call.args[0][0], prompt[0]) and torch.equal(call.args[1][0], prompt[1:])
    chunk0 = generated["case4_dialogue_multibatch.batch0.generate_long_codes"]  # [10, 47]
    assert torch.equal(out.sequences[0], chunk0)  # chunk 1 is <|im_end|> at once: no audio (see greedy test)
    assert out.lengths.tolist() == [47] and out.eos_reached.tolist() == [False]


# ---------------------------------------------------------------------------------------------------------
# Batching, compile, caches
# ---------------------------------------------------------------------------------------------------------


def test_batch_equals_single(model, prompts):
    names = ["case2_clone.batch0", "case1_plain.batch0", "case3_dialogue.batch0"]
    singles = [model.generate(*prompt_inputs(prompts, n), do_sample=False, max_new_tokens=48) for n in names]
    length = max(prompts[f"{n}.prompt"].shape[1] for n in names)
    input_ids = torch.full((3, length), 410)
    audio_codes = torch.zeros(3, 10, length, dtype=torch.long)
    attention_mask = torch.zeros(3, length, dtype=torch.long)
    for row, name in enumerate(names):
        prompt = prompts[f"{name}.prompt"]
        input_ids[row, -prompt.shape[1] :] = prompt[0]
        audio_codes[row, :, -prompt.shape[1] :] = prompt[1:]
        attention_mask[row, -prompt.shape[1] :] = 1

    batched = model.generate(input_ids, audio_codes, attention_mask, do_sample=False, max_new_tokens=48)
    assert batched.lengths.tolist() == [34, 7, 48]
    assert batched.eos_reached.tolist() == [True, True, False]
    assert batched.sequences.shape == (3, 10, 48)
    for row, single in enumerate(singles):
        n = int(single.lengths[0])
        assert torch.equal(batched.sequences[row, :, :n], single.sequences[0])
        assert (batched.sequences[row, :, n:] == CODE_PAD_VALUE).all()


def test_compiled_equals_eager_without_recompiling():
    """One fullgraph compile of the frame step serves a second prompt length in the same cache bucket.

    aot_eager keeps this under a minute on two CPU cores; inductor (the default backend) traces the same
    graph and additionally generates kernels (minutes here), exercised by benchmarks/bench_generate.py.
    """
    from torch._dynamo.utils import counters

    model = tiny_random_model()
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", mode=None)
    torch._dynamo.reset()
    counters.clear()
    prompts = [
        torch.randint(0, 80, (1, length), generator=torch.Generator().manual_seed(length))
        for length in (23, 41)
    ]
    eager = [model.generate(p, do_sample=False, max_new_tokens=40) for p in prompts]
    assert max(e.lengths.item() for e in eager) >= 10  # the comparison covers real decoding

    compiled = model.generate(prompts[0], do_sample=False, max_new_tokens=40, compile=True)
    assert counters["stats"]["unique_graphs"] == 1
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled_again = model.generate(prompts[1], do_sample=False, max_new_tokens=40, compile=True)
    assert counters["stats"]["unique_graphs"] == 1
    for got, want in zip((compiled, compiled_again), eager):
        assert torch.equal(got.sequences, want.sequences) and torch.equal(got.lengths, want.lengths)


def test_changing_sampling_values_between_calls_does_not_recompile():
    """temperature, top_p, top_k and repetition_penalty reach the compiled step as tensors: new values (for a
    penalty that stays on) reuse the graph, and the compiled codes equal the eager ones for each setting."""
    from torch._dynamo.utils import counters

    model = tiny_random_model()
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", mode=None)
    torch._dynamo.reset()
    counters.clear()
    prompt = torch.randint(0, 80, (1, 23), generator=torch.Generator().manual_seed(23))
    settings = [
        dict(temperature=0.8, top_p=0.8, top_k=30, repetition_penalty=1.1),
        dict(temperature=0.5, top_p=0.95, top_k=5, repetition_penalty=1.3),
        dict(temperature=1.3, top_p=0.6, top_k=0, repetition_penalty=2.0),
    ]
    for index, setting in enumerate(settings):
        torch.manual_seed(0)
        with torch._dynamo.config.patch(error_on_recompile=index > 0):
            compiled = model.generate(prompt, max_new_tokens=12, compile=True, **setting)
        torch.manual_seed(0)
        eager = model.generate(prompt, max_new_tokens=12, **setting)
        assert compiled.lengths.item() >= 2  # the compiled step ran
        assert torch.equal(compiled.sequences, eager.sequences), setting
    assert counters["stats"]["unique_graphs"] == 1


def test_stop_check_interval_does_not_change_the_codes(model, prompts):
    """Rows that end between two checks keep their length: the frames made after the end are discarded."""
    names = ["case1_plain.batch0", "case2_clone.batch0"]  # greedy: 7 and 34 frames
    length = max(prompts[f"{n}.prompt"].shape[1] for n in names)
    input_ids = torch.full((2, length), 410)
    audio_codes = torch.zeros(2, 10, length, dtype=torch.long)
    attention_mask = torch.zeros(2, length, dtype=torch.long)
    for row, name in enumerate(names):
        prompt = prompts[f"{name}.prompt"]
        input_ids[row, -prompt.shape[1] :] = prompt[0]
        audio_codes[row, :, -prompt.shape[1] :] = prompt[1:]
        attention_mask[row, -prompt.shape[1] :] = 1
    inputs = dict(input_ids=input_ids, audio_codes=audio_codes, attention_mask=attention_mask)
    every_frame = model.generate(**inputs, do_sample=False, max_new_tokens=48, stop_check_interval=1)
    assert every_frame.lengths.tolist() == [7, 34]
    for interval in (5, 100):
        output = model.generate(**inputs, do_sample=False, max_new_tokens=48, stop_check_interval=interval)
        assert torch.equal(output.sequences, every_frame.sequences)
        assert torch.equal(output.lengths, every_frame.lengths)
        assert torch.equal(output.eos_reached, every_frame.eos_reached)
    assert model.decode_session.frame_index.item() == 48  # interval 100: the loop ran to the budget


def test_generate_uses_one_decode_session_per_model(model, prompts):
    input_ids, audio_codes = prompt_inputs(prompts, "case1_plain.batch0")
    session = model.decode_session
    assert model.decode_session is session and model.generation_lock() is session.lock
    first = model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=5)
    assert model.decode_session is session and session.sequences is not None
    copied = copy.deepcopy(model)  # the session (a lock and caches) is not copied
    assert copied.decode_session is not session and copied.decode_session.model is copied
    again = copied.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=5)
    assert torch.equal(again.sequences, first.sequences)


def test_noise_layout_gives_each_draw_its_own_slice_in_reference_order(model):
    layout = model.decode_session.noise_layout
    vocab, codebook, num_codebooks = 512, 64, 10
    assert layout.width == 2 * vocab + (num_codebooks - 1) * codebook
    noise = torch.arange(layout.width).expand(2, -1)
    views = [layout.semantic(noise), layout.ras(noise)]
    views += [layout.codebook(noise, index) for index in range(1, num_codebooks)]
    assert [v.shape[1] for v in views] == [vocab, vocab] + [codebook] * (num_codebooks - 1)
    assert torch.equal(torch.cat(views, dim=1), noise)  # in order, no gap, no overlap


def test_caches_sized_by_request_not_context():
    """100 frames on a model with a 32k context: the slow cache holds prompt + max_new_tokens rounded up to the
    bucket, the fast cache num_codebooks slots; nothing is sized by the context."""
    model = tiny_random_model(max_seq_len=32768)
    prompt = torch.randint(0, 80, (1, 37), generator=torch.Generator().manual_seed(1))
    model.generate(prompt, do_sample=False, max_new_tokens=100)
    state = model.decode_session
    expected_slots = CACHE_LENGTH_BUCKET * -(-(37 + 100) // CACHE_LENGTH_BUCKET)
    assert expected_slots < 32768
    for layer in state.slow_cache.layers:
        assert layer.keys.shape == layer.values.shape == (1, 1, expected_slots, 16)
    for layer in state.fast_cache.layers:
        assert layer.keys.shape == (1, 1, 4, 16)
    sizes = {t.shape[-1] for t in (state.attention_mask, state.sequences)}
    assert sizes == {expected_slots}
    model.release_generation_state()
    assert state.slow_cache is None and state.sequences is None


def test_compile_refuses_a_quantizer_that_cannot_compile():
    model = tiny_random_model()
    model.hf_quantizer = mock.Mock(is_compileable=False)
    with pytest.raises(ValueError, match="compile=False"):
        model.generate(torch.randint(0, 80, (1, 9)), do_sample=False, max_new_tokens=3, compile=True)


def test_max_new_tokens_is_capped_by_the_context():
    model = tiny_random_model(max_seq_len=64)
    prompt = torch.randint(0, 80, (1, 60), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, do_sample=False, max_new_tokens=1000)
    assert out.sequences.shape[-1] <= 4
    assert model.decode_session.slow_cache.layers[0].keys.shape[2] == 64


def test_repetition_penalty_changes_greedy_output(model, prompts):
    """case2's greedy run repeats <|semantic:52|> five times; a strong penalty breaks that."""
    input_ids, audio_codes = prompt_inputs(prompts, "case2_clone.batch0")
    plain = model.generate(input_ids, audio_codes, do_sample=False, max_new_tokens=20)
    penalised = model.generate(
        input_ids, audio_codes, do_sample=False, max_new_tokens=20, repetition_penalty=3.0
    )
    assert not torch.equal(plain.sequences, penalised.sequences)

    def longest_run(codes: torch.Tensor) -> int:
        best = run = 1
        for a, b in zip(codes[:-1].tolist(), codes[1:].tolist()):
            run = run + 1 if a == b else 1
            best = max(best, run)
        return best

    assert longest_run(plain.sequences[0, 0]) >= 4 and longest_run(penalised.sequences[0, 0]) < 4


# ---------------------------------------------------------------------------------------------------------
# Generation config and argument checking
# ---------------------------------------------------------------------------------------------------------


def test_model_carries_and_saves_the_shipped_generation_config(model, tmp_path):
    config = model.generation_config  # TINY has no generation_config.json: defaults fill in
    assert isinstance(config, FishS2GenerationConfig)
    for key, value in FISH_S2_GENERATION_DEFAULTS.items():
        assert getattr(config, key) == value, key
    assert config.eos_token_id == IM_END

    small = tiny_random_model()
    small.generation_config.top_k = 5
    small.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["temperature"] == 0.8 and saved["ras_window_size"] == 10 and saved["top_k"] == 5
    reloaded = FishS2ForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.generation_config.top_k == 5 and reloaded.generation_config.ras_top_p == 0.9


def test_generation_config_argument_and_kwargs_priority(model, prompts):
    input_ids, audio_codes = prompt_inputs(prompts, "case1_plain.batch0")
    greedy = FishS2GenerationConfig(do_sample=False, max_new_tokens=3)
    out = model.generate(input_ids, audio_codes, generation_config=greedy)
    assert out.sequences.shape[-1] == 3
    out = model.generate(input_ids, audio_codes, generation_config=greedy, max_new_tokens=2)
    assert out.sequences.shape[-1] == 2
    tensor = model.generate(
        input_ids, audio_codes, do_sample=False, max_new_tokens=2, return_dict_in_generate=False
    )
    assert isinstance(tensor, torch.Tensor) and torch.equal(tensor, out.sequences)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(top_p=1.5), ValueError, "top_p"),
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
        (dict(ras_window_size=-1), ValueError, "ras_window_size"),
        (dict(num_beams=4), ValueError, "num_beams"),
        (dict(min_p=0.1), ValueError, "min_p"),
        (dict(no_such_option=1), TypeError, "no_such_option"),
    ],
)
def test_bad_generation_arguments(model, prompts, kwargs, error, message):
    input_ids, audio_codes = prompt_inputs(prompts, "case1_plain.batch0")
    with pytest.raises(error, match=message):
        model.generate(input_ids, audio_codes, **kwargs)


def test_bad_prompts(model, prompts):
    input_ids, audio_codes = prompt_inputs(prompts, "case1_plain.batch0")
    with pytest.raises(ValueError, match="left padding"):
        mask = torch.ones_like(input_ids)
        mask[0, -1] = 0
        model.generate(input_ids, audio_codes, mask, do_sample=False)
    with pytest.raises(ValueError, match="audio_codes must be"):
        model.generate(input_ids, audio_codes[:, :3], do_sample=False)
    with pytest.raises(ValueError, match="input_ids must be"):
        model.generate(input_ids[0], do_sample=False)
    with pytest.raises(ValueError, match="model context"):
        model.generate(torch.full((1, 512), 5), do_sample=False)
    with pytest.raises(ValueError, match="batch size 1"):
        model.generate(input_ids.repeat(2, 1), audio_codes.repeat(2, 1, 1), streamer=mock.Mock())
