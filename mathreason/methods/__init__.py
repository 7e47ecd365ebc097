"""One module per method; each has ``run(ctx) -> summary``."""

import importlib

METHOD_MODULES = {"grpo": "mathreason.methods.grpo", "dpo": "mathreason.methods.dpo", "eval": "mathreason.methods.eval"}


def get_method(name: str):
    return importlib.import_module(METHOD_MODULES[name]).run
