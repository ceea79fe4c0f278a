"""``optimize_for_cpu_decoding()``: a weight-layout change only (same parameters, keys, values, saved files, and
the authors' greedy and seeded sampled codes)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, expected_tensors
from torch import nn

from transformers_fish_s2.modeling import FishS2ForConditionalGeneration

CASE = "case2_clone.batch0"


@pytest.fixture(scope="module")
def models() -> tuple[FishS2ForConditionalGeneration, FishS2ForConditionalGeneration]:
    plain = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()
    optimized = FishS2ForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32).eval()
    parameters = dict(optimized.named_parameters())
    assert optimized.optimize_for_cpu_decoding() is optimized
    assert dict(optimized.named_parameters()) == parameters  # same Parameter objects, re-laid-out in place
    return plain, optimized


def prompt(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    tensor = expected_tensors("prompts")[f"{name}.prompt"]
    return tensor[0][None], tensor[1:][None]


def test_linear_weights_become_column_major_with_the_same_values(models):
    plain, optimized = models
    linears = [name for name, module in optimized.named_modules() if type(module) is nn.Linear]
    assert linears
    for name in linears:
        weight = optimized.get_submodule(name).weight
        assert weight.stride() == (1, weight.shape[0]), name
    assert optimized.get_input_embeddings().weight.is_contiguous()  # lookups keep their row-major table
    reference = plain.state_dict()
    state = optimized.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[key], reference[key]) for key in reference)


@torch.no_grad()
def test_same_codes_greedy_and_seeded(models):
    plain, optimized = models
    for kwargs in (dict(do_sample=False), dict(do_sample=True, temperature=0.8, top_p=0.8, top_k=30)):
        outputs = []
        for model in (plain, optimized):
            torch.manual_seed(3)
            outputs.append(model.generate(*prompt(CASE), max_new_tokens=24, **kwargs).sequences)
        assert torch.equal(outputs[0], outputs[1]), kwargs


def test_saves_ordinary_row_major_tensors(models, tmp_path):
    _, optimized = models
    optimized.save_pretrained(tmp_path)
    reloaded = FishS2ForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32)
    for key, value in reloaded.state_dict().items():
        assert value.is_contiguous() and torch.equal(value, optimized.state_dict()[key]), key
