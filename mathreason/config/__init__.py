"""Config stage: the schema that validates the composed YAML, the GRPO batch
geometry derived from it, the sweep check and the Hydra callbacks that run
them before anything heavy is imported. Torch-free."""
