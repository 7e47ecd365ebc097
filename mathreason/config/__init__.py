"""Config stage: the schema that validates the composed YAML and the GRPO batch
geometry derived from it. Torch-free; it checks the config alone (what the
machine has is mathreason.launch's job)."""
