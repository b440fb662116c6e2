"""Pruning Lab's engine: models, methods, measurements, runs and their history. No UI here."""
