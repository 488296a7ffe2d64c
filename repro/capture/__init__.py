"""Capture of what a run depends on: the environment, the code's git state, input files."""
