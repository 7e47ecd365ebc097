"""Analysis of finished run directories: reading (:mod:`.runs`, pandas),
paired statistics (:mod:`.stats`, numpy + scipy.stats), tables and the report
(:mod:`.report`), plots (:mod:`.plots`, matplotlib) and the W&B workspace
(:mod:`.dashboard`). Submodules are imported on use; this package imports
nothing heavy itself."""
