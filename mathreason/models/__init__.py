"""Models: load model + tokenizer (+ LoRA) per backend; build/cache the tiny model."""
