"""Evaluations: datasets, scorers and experiments that run through the bus.

`datasets` keeps versioned datasets on JetStream, `scorers` judges one run item,
`experiments` stores experiments and run items, `runner` sends every item through the bus
as a real task and scores it, `stats` holds the intervals and tests (from scipy).
"""
