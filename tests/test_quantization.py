"""bitsandbytes 8/4-bit and optimum-quanto int8/int4 on the official layout (tiny fixture): the default skip rule
(module types), agreement of greedy predictions with the bf16 model, generate, save/reload, helper configs.

Agreement is measured teacher-forced over the authors' recorded greedy frames (141 frames, 1374 predictions:
the slow AR's token and the fast AR's nine residual codes per frame), so one early flip does not derail the rest
of a free-running comparison. Measured on this tiny random model (bf16 compute): bnb-8bit 0.988, quanto-int8
0.983, bnb-4bit (NF4) 0.873, quanto-int4 0.878. The tiny model's greedy margins are small (down to 1e-3 in the
fixture), so even bf16 vs fp32 flips ~3% of its slow tokens; the floors sit a few points under the measurements
and far above chance (1/64): 0.95 for 8-bit schemes, 0.80 for 4-bit.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, expected_tensors
from torch import nn
from transformers import BitsAndBytesConfig, QuantoConfig

from transformers_fish_s2 import FishS2ForConditionalGeneration
from transformers_fish_s2.quantization import (
    DEFAULT_SKIP_MODULES,
    bnb_config,
    quantization_config,
    quanto_config,
    skip_modules_of,
    with_default_skip_modules,
)

SCHEMES = ["bnb-8bit", "bnb-4bit", "quanto-int8", "quanto-int4"]
QUANTIZED_LINEAR = {
    "bnb-8bit": "Linear8bitLt",
    "bnb-4bit": "Linear4bit",
    "quanto-int8": "QLinear",
    "quanto-int4": "QLinear",
}
AGREEMENT_FLOOR = {"bnb-8bit": 0.95, "quanto-int8": 0.95, "bnb-4bit": 0.80, "quanto-int4": 0.80}
GENERATE_PROMPT = "case3_dialogue.batch0"  # 175-token prompt; greedy decoding runs past 8 frames
GENERATE_FRAMES = 8


def _library(scheme: str) -> str:
    return "bitsandbytes" if scheme.startswith("bnb") else "optimum.quanto"


@pytest.fixture(scope="module")
def base() -> FishS2ForConditionalGeneration:
    return FishS2ForConditionalGeneration.from_pretrained(TINY)  # bf16, as the fixture's config says


@pytest.fixture(scope="module", params=SCHEMES)
def quantized(request) -> tuple[str, FishS2ForConditionalGeneration]:
    pytest.importorskip(_library(request.param))
    config = quantization_config(request.param)
    return request.param, FishS2ForConditionalGeneration.from_pretrained(TINY, quantization_config=config)


@pytest.fixture(scope="module")
def recorded() -> tuple[dict, dict]:
    return expected_tensors("prompts"), expected_tensors("generation")


def teacher_forced_predictions(model, prompt: torch.Tensor, frames: torch.Tensor):
    """Greedy predictions for each recorded frame given the prompt and all earlier recorded frames.

    ``prompt [11, T]`` and ``frames [11, N]`` hold token ids in row 0 and codes below. Returns the slow AR's
    token (argmax over the semantic ids and ``<|im_end|>``, the ids generation allows) ``[N]`` and, for the
    semantic frames, the fast AR's argmax for codebooks 1..9 ``[n_semantic, 9]``.
    """
    config, device = model.config, model.device  # bitsandbytes puts the model on the GPU when there is one
    count = frames.shape[1]
    input_ids = torch.cat([prompt[0], frames[0, :-1]])[None].to(device)
    audio_codes = torch.cat([prompt[1:], frames[1:, :-1]], dim=1)[None].to(device)
    with torch.no_grad():
        output = model(input_ids, audio_codes, logits_to_keep=count)
        allowed = torch.full((config.text_config.vocab_size,), float("-inf"), device=device)
        allowed[config.semantic_start_token_id : config.semantic_end_token_id + 1] = 0
        allowed[config.eos_token_id] = 0
        tokens = (output.logits[0].float() + allowed).argmax(-1).cpu()
        semantic = frames[0] != config.eos_token_id
        if not semantic.any():
            return tokens, torch.zeros(0, config.num_codebooks - 1, dtype=torch.long)
        hidden = output.last_hidden_state[0][semantic.to(device)]
        codes = model.audio_decoder(hidden, frames[1:, semantic].T.to(device)).argmax(-1)[:, 1:]
    return tokens, codes.cpu()


@pytest.fixture(scope="module")
def base_predictions(base, recorded):
    prompts, generations = recorded
    return {
        case: teacher_forced_predictions(
            base, prompts[f"{case}.prompt"], generations[f"{case}.generated_frames"]
        )
        for case in (key.removesuffix(".prompt") for key in prompts)
    }


# ------------------------------------------------------------------------------------------------------------
# The default rule, verified on module types


def test_default_rule_quantizes_slow_layers_only(quantized):
    scheme, model = quantized
    quantized_name = QUANTIZED_LINEAR[scheme]
    slow_linears = {
        name: type(module).__name__
        for name, module in model.text_model.model.layers.named_modules()
        if isinstance(module, nn.Linear)
    }
    assert len(slow_linears) == 5 * model.config.text_config.n_layer  # wqkv, wo, w1, w2, w3
    assert set(slow_linears.values()) == {quantized_name}, slow_linears

    fast_types = {type(module).__name__ for module in model.audio_decoder.modules()}
    assert quantized_name not in fast_types
    for name, module in model.audio_decoder.named_modules():
        if isinstance(module, nn.Linear):
            assert type(module) is nn.Linear and module.weight.dtype == torch.bfloat16, name
    for embedding in (
        model.text_model.model.embeddings,
        model.audio_decoder.codebook_embeddings,
        model.audio_decoder.embeddings,
    ):
        assert type(embedding) is nn.Embedding and embedding.weight.dtype == torch.bfloat16
    assert skip_modules_of(model.config.quantization_config) == list(DEFAULT_SKIP_MODULES)


def test_a_plain_config_gets_the_default_rule_without_being_changed():
    pytest.importorskip("bitsandbytes")
    user_config = BitsAndBytesConfig(load_in_8bit=True)
    model = FishS2ForConditionalGeneration.from_pretrained(TINY, quantization_config=user_config)
    assert type(model.audio_decoder.layers[0].attention.wqkv) is nn.Linear
    assert type(model.audio_decoder.output) is nn.Linear
    assert type(model.text_model.model.layers[0].attention.wqkv).__name__ == "Linear8bitLt"
    assert user_config.llm_int8_skip_modules is None


def test_an_explicit_skip_list_replaces_the_rule():
    pytest.importorskip("optimum.quanto")
    # Quantize the fast AR's transformer but keep its head.
    model = FishS2ForConditionalGeneration.from_pretrained(
        TINY, quantization_config=quanto_config("int8", skip_modules=["audio_decoder.output"])
    )
    decoder = model.audio_decoder
    assert type(decoder.layers[0].feed_forward.w1).__name__ == "QLinear"
    assert type(decoder.project_in).__name__ == "QLinear"
    assert type(decoder.output) is nn.Linear
    input_ids = torch.tensor([[1, 2, 3, 420, 421]], device=model.device)
    with torch.no_grad():
        output = model(input_ids)
        logits = decoder(
            output.last_hidden_state[0], torch.zeros(5, 10, dtype=torch.long, device=model.device)
        )
    assert torch.isfinite(logits).all()

    # An empty list quantizes every linear layer, the fast AR's head included.
    pytest.importorskip("bitsandbytes")
    model = FishS2ForConditionalGeneration.from_pretrained(
        TINY, quantization_config=bnb_config(8, skip_modules=[])
    )
    assert type(model.audio_decoder.output).__name__ == "Linear8bitLt"


# ------------------------------------------------------------------------------------------------------------
# Agreement with the bf16 model and generation


def test_greedy_predictions_agree_with_bf16_model(quantized, base_predictions, recorded):
    scheme, model = quantized
    prompts, generations = recorded
    same = total = 0
    for case, (base_tokens, base_codes) in base_predictions.items():
        tokens, codes = teacher_forced_predictions(
            model, prompts[f"{case}.prompt"], generations[f"{case}.generated_frames"]
        )
        same += int((tokens == base_tokens).sum() + (codes == base_codes).sum())
        total += base_tokens.numel() + base_codes.numel()
    rate = same / total
    assert rate >= AGREEMENT_FLOOR[scheme]


def test_generate_runs_on_quantized_model(quantized, recorded):
    scheme, model = quantized
    prompt = recorded[0][f"{GENERATE_PROMPT}.prompt"].to(model.device)
    output = model.generate(prompt[:1], prompt[None, 1:], do_sample=False, max_new_tokens=GENERATE_FRAMES)
    length = int(output.lengths[0])
    assert output.sequences.shape == (1, model.config.num_codebooks, length)
    assert 1 <= length <= GENERATE_FRAMES
    codes = output.sequences[0]
    assert ((codes >= 0) & (codes < model.config.codebook_size)).all()


# ------------------------------------------------------------------------------------------------------------
# Saving


def test_save_and_reload(quantized, tmp_path):
    scheme, model = quantized
    if scheme.startswith("quanto"):
        with pytest.raises(ValueError, match="quanto and is not serializable"):
            model.save_pretrained(tmp_path)
        return
    # A fresh model: on AVX512-BF16 CPUs bitsandbytes repacks 4-bit weights at the first forward and re-quantizes
    # them (lossily) when saving afterwards; a model saved before running reloads bit-exactly (docs).
    model = FishS2ForConditionalGeneration.from_pretrained(
        TINY, quantization_config=quantization_config(scheme)
    )
    model.save_pretrained(tmp_path)
    reloaded = FishS2ForConditionalGeneration.from_pretrained(
        tmp_path
    )  # quantization_config from config.json
    assert type(reloaded.text_model.model.layers[0].attention.wo).__name__ == QUANTIZED_LINEAR[scheme]
    assert type(reloaded.audio_decoder.layers[0].attention.wo) is nn.Linear
    assert skip_modules_of(reloaded.config.quantization_config) == list(DEFAULT_SKIP_MODULES)
    input_ids = torch.tensor([[5, 6, 7, 419, 430, 441]], device=model.device)
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids).logits, model(input_ids).logits)


# ------------------------------------------------------------------------------------------------------------
# Config helpers


def test_scheme_names_build_the_documented_configs():
    eight = quantization_config("bnb-8bit")
    assert isinstance(eight, BitsAndBytesConfig) and eight.load_in_8bit
    four = quantization_config("bnb-4bit", compute_dtype=torch.float16)
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype == torch.float16
    for name, weights in (("quanto-int8", "int8"), ("quanto-int4", "int4")):
        config = quantization_config(name)
        assert isinstance(config, QuantoConfig) and config.weights == weights
    for config in (eight, four, quantization_config("quanto-int8")):
        assert skip_modules_of(config) == list(DEFAULT_SKIP_MODULES)
    assert quantization_config(None) is None and quantization_config("none") is None
    assert skip_modules_of(quantization_config("bnb-4bit", skip_modules=["lm_head"])) == ["lm_head"]


def test_with_default_skip_modules_fills_only_unset_lists():
    filled = with_default_skip_modules(QuantoConfig(weights="int8"))
    assert filled.modules_to_not_convert == list(DEFAULT_SKIP_MODULES)
    empty = BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=[])
    assert with_default_skip_modules(empty) is empty and empty.llm_int8_skip_modules == []
    from_dict = with_default_skip_modules({"quant_method": "bitsandbytes", "load_in_8bit": True})
    assert isinstance(from_dict, BitsAndBytesConfig)
    assert from_dict.llm_int8_skip_modules == list(DEFAULT_SKIP_MODULES)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: quantization_config("int8"), "unknown quantization scheme 'int8'"),
        (
            lambda: quantization_config(QuantoConfig(), skip_modules=[]),
            "pass skip_modules with a scheme name",
        ),
        (lambda: bnb_config(3), "bits must be 8 or 4"),
    ],
)
def test_helper_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
