"""The CPU weight layout (column-major wide fp32 linear weights, all of them in huge-page buffers): applied by
the decode session on its own, a layout change only (same parameters, keys, values, saved files, and the
authors' greedy and seeded sampled codes), never seen by ``state_dict``, ``save_pretrained`` or training."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, expected_tensors
from torch import nn

from transformers_fish_s2.modeling import FishS2ForConditionalGeneration, cpu_layout

CASE = "case2_clone.batch0"


def load() -> FishS2ForConditionalGeneration:
    return FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()


def linear_weights(model: FishS2ForConditionalGeneration) -> dict[str, nn.Parameter]:
    return {name: module.weight for name, module in model.named_modules() if type(module) is nn.Linear}


def is_column_major(weight: torch.Tensor) -> bool:
    return weight.stride() == (1, weight.shape[0])


def prompt(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    tensor = expected_tensors("prompts")[f"{name}.prompt"]
    return tensor[0][None], tensor[1:][None]


@pytest.fixture(scope="module")
def models() -> tuple[FishS2ForConditionalGeneration, FishS2ForConditionalGeneration]:
    """A model kept row-major (its switch off) and one that generate lays out on its own."""
    plain, optimized = load(), load()
    plain.cpu_weight_layout = False
    parameters = dict(optimized.named_parameters())
    optimized.generate(*prompt(CASE), max_new_tokens=2, do_sample=False)
    assert dict(optimized.named_parameters()) == parameters  # same Parameter objects, re-laid-out in place
    return plain, optimized


def wide(weight: torch.Tensor) -> bool:
    """Laid out column-major: the weights with ``out_features >= in_features`` (the others read faster row-major)."""
    return weight.shape[0] >= weight.shape[1]


def test_generate_on_cpu_lays_linear_weights_out_column_major(models):
    plain, optimized = models
    weights = linear_weights(optimized)
    assert any(wide(weight) for weight in weights.values())
    assert any(not wide(weight) for weight in weights.values())  # the feed-forwards' down projections
    for name, weight in weights.items():
        assert is_column_major(weight) if wide(weight) else weight.is_contiguous(), name
    assert all(weight.is_contiguous() for weight in linear_weights(plain).values())
    # every linear and embedding weight sits in a 2 MiB-aligned shared buffer (huge pages), none in plain's
    in_buffers = [weight for weight, _ in cpu_layout.decode_weights(optimized)]
    assert {id(w) for w in weights.values()} <= {id(w) for w in in_buffers}
    assert all(cpu_layout.is_shared(weight) for weight in in_buffers)
    buffers = {weight.untyped_storage().data_ptr() for weight in in_buffers}
    starts = [min(w.data_ptr() for w in in_buffers if w.untyped_storage().data_ptr() == b) for b in buffers]
    assert all(start % (2 << 20) == 0 for start in starts)
    assert not any(cpu_layout.is_shared(weight) for weight, _ in cpu_layout.decode_weights(plain))
    assert optimized.get_input_embeddings().weight.is_contiguous()  # lookups keep their row-major table


def test_state_dict_shows_ordinary_tensors_with_the_same_values(models):
    plain, optimized = models
    reference = plain.state_dict()
    state = optimized.state_dict()
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        assert state[key].is_contiguous() and torch.equal(state[key], value), key
        assert not cpu_layout.is_shared(state[key]), key  # safetensors refuses tensors sharing a buffer
    kept = optimized.state_dict(keep_vars=True)
    assert all(kept[f"{name}.weight"] is weight for name, weight in linear_weights(optimized).items())


@torch.no_grad()
def test_same_codes_greedy_and_seeded(models):
    plain, optimized = models
    for kwargs in (dict(do_sample=False), dict(do_sample=True, temperature=0.8, top_p=0.8, top_k=30)):
        outputs = []
        for model in (plain, optimized):
            torch.manual_seed(3)
            outputs.append(model.generate(*prompt(CASE), max_new_tokens=24, **kwargs).sequences)
        assert torch.equal(outputs[0], outputs[1]), kwargs
    assert all(weight.is_contiguous() for weight in linear_weights(plain).values())


def test_saves_ordinary_row_major_tensors(models, tmp_path):
    _, optimized = models
    optimized.save_pretrained(tmp_path)
    reloaded = FishS2ForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32)
    for key, value in reloaded.state_dict().items():
        assert value.is_contiguous() and torch.equal(value, optimized.state_dict()[key]), key


def test_training_mode_restores_row_major_and_generate_lays_out_again():
    model = load()
    model.optimize_for_cpu_decoding()
    before = {name: weight.detach().clone() for name, weight in linear_weights(model).items()}
    model.train()
    for name, weight in linear_weights(model).items():
        assert weight.is_contiguous() and torch.equal(weight, before[name]), name
    assert not any(cpu_layout.is_shared(weight) for weight, _ in cpu_layout.decode_weights(model))
    model.eval()
    model.generate(*prompt(CASE), max_new_tokens=2, do_sample=False)
    assert all(is_column_major(weight) for weight in linear_weights(model).values() if wide(weight))


def test_bf16_weights_keep_their_layout():
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.bfloat16).eval()
    model.generate(*prompt(CASE), max_new_tokens=2, do_sample=False)
    assert all(weight.is_contiguous() for weight in linear_weights(model).values())


@torch.no_grad()
def test_layer_step_shortcut_gives_the_module_path_bits_and_respects_hooks(monkeypatch):
    """Eager inference runs the decoder layers through ``FishS2DecoderLayer.step`` (no module calls): the same
    logits bit for bit as the module calls, for the fast AR and the slow AR; a hook sends it back to them."""
    from transformers_fish_s2.modeling import modeling_fish_s2

    model = load()
    fast = model.audio_decoder
    cache = fast.make_fast_cache(1)
    first, next_input = torch.randn(1, 2, fast.config.dim), torch.randn(1, 1, fast.config.dim)
    assert fast.can_step(cache)
    for inputs, position in ((first, 0), (next_input, 2)):
        shortcut = fast.decode_step(inputs, position, cache, shortcut=True)
        modules = fast.decode_step(inputs, position, cache, shortcut=False)
        assert torch.equal(shortcut, modules), position

    input_ids, audio_codes = prompt(CASE)
    slow_logits = {}
    for plain in (True, False):
        if not plain:
            monkeypatch.setattr(modeling_fish_s2, "plain_decoder_layers", lambda layers: False)
        slow_logits[plain] = model(input_ids=input_ids, audio_codes=audio_codes).logits
    assert torch.equal(slow_logits[True], slow_logits[False])
    monkeypatch.undo()

    calls = []
    handle = fast.layers[0].feed_forward.w2.register_forward_hook(lambda *args: calls.append(1))
    assert not fast.can_step(cache)
    fast.decode_step(next_input, 2, cache)
    assert calls  # the hook ran: the module path was taken
    handle.remove()
    assert fast.can_step(cache)


def test_a_model_cast_after_its_layout_gets_row_major_weights_back():
    """bf16 products read column-major weights ~3x slower: the next decode session puts them back."""
    model = load()
    model.generate(*prompt(CASE), max_new_tokens=2, do_sample=False)
    assert any(is_column_major(weight) for weight in linear_weights(model).values())
    model.to(torch.bfloat16)
    assert any(is_column_major(weight) for weight in linear_weights(model).values())  # .to keeps strides
    model.generate(*prompt(CASE), max_new_tokens=2, do_sample=False)
    assert all(weight.is_contiguous() for weight in linear_weights(model).values())


def test_compile_on_cpu_uses_inductors_cpp_wrapper(monkeypatch):
    """Without a compile_config the CPU frame step compiles with inductor's C++ wrapper (calling ~400 kernels
    from the generated Python wrapper cost ~15% of a frame); nothing is compiled by this test."""
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: calls.append(kwargs) or fn)
    model = load()
    model.generate(*prompt(CASE), max_new_tokens=2, do_sample=False, compile=True)
    assert calls == [dict(fullgraph=True, backend="inductor", options={"cpp_wrapper": True})]
