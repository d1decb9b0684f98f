"""The command line: one module per command, argument groups shared with the pytest options, the
guarded entry point.
"""
