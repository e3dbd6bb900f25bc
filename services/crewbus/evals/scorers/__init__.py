"""Scorers: each judges one run item and returns a Score (see `base.Scorer`)."""
