"""Runs: configs, experiments, schedules, the store, submission and executors."""
