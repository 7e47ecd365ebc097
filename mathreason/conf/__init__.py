"""The Hydra config tree (a package so that installed entry points find it)."""
