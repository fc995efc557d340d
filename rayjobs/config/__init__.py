"""Config: compose with Hydra, check before Ray starts, typed specs of each stage."""
