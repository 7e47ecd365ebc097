"""Secrets never reach a record: run.json, config.yaml, W&B's config and tags."""

from __future__ import annotations

import os
import re
from typing import Any

# Environment variables whose values never reach a record: these, and any whose
# name looks secret (…KEY, …TOKEN, …SECRET, …PASSWORD, …CREDENTIALS).
SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)


def scrub_secrets(obj: Any) -> Any:
    """Replace any string that contains a secret from the environment with '***'."""
    secrets_now = {v for k, v in os.environ.items()
                   if (k in SECRET_ENV or SECRET_NAME.search(k)) and len(v) >= 8}
    if not secrets_now:
        return obj

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str) and any(s in x for s in secrets_now):
            return "***"
        return x

    return walk(obj)
