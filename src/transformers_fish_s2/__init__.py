"""Fish Audio S2 text-to-speech for Hugging Face transformers."""
