"""Rendering for people: the console, charts, PNG plots and HTML pages."""
