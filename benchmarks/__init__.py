"""Throughput harness: rayjobs end to end vs the model-only ceiling and the baselines, in one run."""
