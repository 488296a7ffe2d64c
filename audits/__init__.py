"""Audits: rerun a recorded training run and judge it against its signed manifest.

The public entry point is :func:`repro.audits.engine.run_audit`, which takes a manifest path and
:class:`repro.audits.options.AuditOptions` and returns an :class:`repro.audits.report.AuditReport`. One module
per job: ``integrity`` (signature, artifacts, data), ``differences`` (recorded vs here),
``rerun`` (through repro's launcher), ``comparison`` (losses, batches, validation), ``tensors``
(checkpoints), ``attribution`` (likely cause), ``spotcheck`` (segment choice), and the report
formats under ``repro.audits.formats``. Only ``repro.cli.audit`` knows about exit codes.
"""
