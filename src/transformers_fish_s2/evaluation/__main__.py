"""``python -m transformers_fish_s2.evaluation``: the Seed-TTS-eval style runner."""

from .cli import main

raise SystemExit(main())
