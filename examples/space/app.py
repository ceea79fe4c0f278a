"""A Hugging Face Space (Gradio) for Fish Audio S2: text box, optional reference voice, tag help, audio out.

Run locally with ``python examples/space/app.py`` (needs ``pip install -r examples/space/requirements.txt``).
``FISH_S2_MODEL`` picks the checkpoint (a folder or Hub id, default ``fishaudio/s2-pro``; a gated repo needs an
``HF_TOKEN`` secret in the Space). :func:`synthesize` is the whole handler and needs no gradio, so it can be
tested and reused without a browser; gradio is imported only by :func:`build_demo`.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

from transformers_fish_s2 import generate_long
from transformers_fish_s2.hub import load_model_and_processor

MODEL = os.environ.get("FISH_S2_MODEL", "fishaudio/s2-pro")
MAX_TEXT_CHARACTERS = 2000
COMMON_TAGS = (
    "[pause] [short pause] [emphasis] [laughing] [chuckle] [sigh] [inhale] [exhale] [whisper] [low voice] "
    "[excited] [angry] [sad] [surprised] [shocked] [shouting] [screaming] [singing] [volume up] [volume down] "
    "[clearing throat] [audience laughter] [with strong accent] [pitch up]"
)
TAG_HELP = f"""
**Inline tags** go anywhere in the text and steer how the next words are said, e.g.
`[whisper] Did you hear that? [laughing] It was only the wind!`. Common ones: {COMMON_TAGS}.
Free-form descriptions work too: `[whisper in small voice]`, `[professional broadcast tone]`.

**Several speakers**: start each turn with `<|speaker:0|>`, `<|speaker:1|>`, ...

**Voice cloning**: upload 10-30 s of clean speech and type exactly what is said in it.
"""


@lru_cache(maxsize=2)
def load(model: str = MODEL):
    """Model and processor, loaded once per checkpoint (on the GPU when there is one)."""
    return load_model_and_processor(model)


def synthesize(
    text: str,
    reference_audio: str | tuple[int, np.ndarray] | None = None,
    reference_text: str = "",
    temperature: float = 0.8,
    top_p: float = 0.8,
    max_new_tokens: int = 1024,
    seed: int | None = None,
    *,
    model: str = MODEL,
) -> tuple[int, np.ndarray]:
    """Speak ``text`` (optionally in the voice of ``reference_audio``, a file path or gradio's ``(rate, array)``)
    and return ``(sampling_rate, float32 waveform)``. Bad input raises ``ValueError`` with a readable message."""
    text = (text or "").strip()
    if not text:
        raise ValueError("Type some text to speak.")
    if len(text) > MAX_TEXT_CHARACTERS:
        raise ValueError(
            f"The text is {len(text)} characters; this demo takes at most {MAX_TEXT_CHARACTERS}."
        )
    references = []
    if reference_audio is not None:
        if not (reference_text or "").strip():
            raise ValueError("Type the transcript of the reference audio (what is said in it).")
        if isinstance(reference_audio, tuple):
            rate, samples = reference_audio
            references.append({"audio": samples, "sampling_rate": int(rate), "text": reference_text.strip()})
        else:
            references.append({"audio": reference_audio, "text": reference_text.strip()})

    fish, processor = load(model)
    if seed is not None:
        torch.manual_seed(int(seed))
    output = generate_long(
        fish,
        processor,
        text,
        references or None,
        split_sentences=True,  # long text in sentence chunks, as fish-s2 speak and the pipeline
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=int(max_new_tokens),
    )
    return processor.sampling_rate, processor.decode(output, return_tensors="np")  # no frames: no samples


def build_demo():
    """The Gradio interface around :func:`synthesize`."""
    import gradio as gr

    def handle(*args):
        try:
            rate, audio = synthesize(*args)
        except (
            ValueError,
            OSError,
        ) as error:  # bad input or an unreachable/gated checkpoint: show, don't crash
            raise gr.Error(str(error)) from None
        if audio.size == 0:  # empty audio is not an error, but say so (as the CLI and save_audio do)
            gr.Warning("The model produced no audio for this text; try again or change the text.")
        return rate, audio

    with gr.Blocks(title="Fish Audio S2") as demo:
        gr.Markdown(
            f"# Fish Audio S2 text-to-speech\nModel: `{MODEL}` (weights under the Fish Audio Research License)"
        )
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", lines=5, value="Hello! [laughing] This is Fish Audio S2.")
                reference_audio = gr.Audio(label="Reference voice (optional)", type="filepath")
                reference_text = gr.Textbox(label="Transcript of the reference voice")
                with gr.Accordion("Sampling", open=False):
                    temperature = gr.Slider(0.1, 1.5, value=0.8, step=0.05, label="temperature")
                    top_p = gr.Slider(0.1, 1.0, value=0.8, step=0.05, label="top-p")
                    max_new_tokens = gr.Slider(
                        64, 2048, value=1024, step=64, label="max frames (21.5 per second)"
                    )
                    seed = gr.Number(value=0, precision=0, label="seed")
                button = gr.Button("Speak", variant="primary")
            with gr.Column():
                audio = gr.Audio(label="Speech", type="numpy")
                gr.Markdown(TAG_HELP)
        button.click(
            handle,
            inputs=[text, reference_audio, reference_text, temperature, top_p, max_new_tokens, seed],
            outputs=audio,
        )
    return demo


if __name__ == "__main__":
    build_demo().launch()
