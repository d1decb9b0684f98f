"""Regression tracking across releases: one record per run, series, change points, the CI gate, the trend page."""
