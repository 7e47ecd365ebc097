"""Scoring stage: answer extraction and equivalence (answers), the reward
registry TRL calls (rewards) and held-out evaluation (evaluation)."""
