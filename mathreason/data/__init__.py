"""Datasets: hub or local-file loaders, the embedded generator, prompts."""
