"""Default fine-tuning settings, shared by the Python API and ``fish-s2 finetune`` (no heavy imports here, so the
command line can show them in ``--help`` without loading peft).

Rank, alpha, learning rate and the 10 warm-up steps are the authors' LoRA fine-tuning recipe; 200 steps of 4
clips is a short first run on a few minutes of audio.
"""

STEPS = 200
LEARNING_RATE = 1e-4
BATCH_SIZE = 4
LORA_RANK = 8
LORA_ALPHA = 16
