"""mathreason: Hydra-driven RL post-training (GRPO, DPO) of LLMs on math reasoning."""

__version__ = "0.1.0"
