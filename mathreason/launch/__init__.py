"""Launch stage, between run.py and the job: the Hydra callbacks, the check of every job of a
sweep before any is submitted (SLURM resources included) and the preflight of the machine a run
lands on (GPU, weights, TRL fields). config/ checks the config alone; this checks where it runs."""
