"""The methods, by the name ``method=`` selects: each is ``run(ctx) -> summary``.
Their modules import TRL and torch only inside ``run``."""

from mathreason.methods import dpo, evaluate_only, grpo, sft

METHODS = {"grpo": grpo.run, "dpo": dpo.run, "sft": sft.run, "eval": evaluate_only.run}
