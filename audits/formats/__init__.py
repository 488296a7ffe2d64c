"""Audit report formats: the console report, JSON, JUnit XML and a loss plot.

Each takes a finished :class:`audits.report.AuditReport`; the file formats are written atomically
through :mod:`repro.files.atomic`.
"""
