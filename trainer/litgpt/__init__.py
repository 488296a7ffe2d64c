"""LitGPT's own GPT under repro's loop (optional: ``pip install 'repro-audit[litgpt]'``).

Importing this package without LitGPT installed raises
:class:`~repro.errors.OptionalTrainerMissing` with the install command, so ``repro trainers``
leaves the trainer out and ``repro run --trainer litgpt`` exits 4 with that message.
"""

import importlib.util

from repro.errors import OptionalTrainerMissing

if importlib.util.find_spec("litgpt") is None:
    raise OptionalTrainerMissing(
        "the litgpt trainer needs LitGPT, which is not installed here; install it with: "
        "pip install -c torch-constraint.txt 'repro-audit[litgpt]' (the constraint keeps the installed torch; "
        "see docs/install.md)"
    )
