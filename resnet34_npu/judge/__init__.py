"""Deciding whether a target computes what the CPU computes: metrics, criteria (profiles and
verdicts), the comparison session with blame, localisation, negative controls, operator checks.
"""
