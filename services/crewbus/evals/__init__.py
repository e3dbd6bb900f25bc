"""Evaluations: datasets, scorers and experiments that run through the bus.

`datasets` keeps versioned datasets on JetStream, `scorers` judges one run item,
`experiments` stores experiments and run items, `runner` sends every item through the bus
as a real task and scores it, `stats` holds the intervals (from scipy), `summary` an
experiment's figures and thresholds, `compare` (with `gate`, `compare_render`) the paired
comparison of two experiments, `results_jsonl` the per-item results format it reads.
"""
