"""LitGPT's own GPT under repro's loop (optional: ``pip install 'repro[litgpt]'``).

Importing this package without LitGPT installed raises
:class:`~repro.errors.TrainerNotFoundError` with the install command, so ``repro trainers`` lists
the trainer as unavailable and ``repro run --trainer litgpt`` exits 4 with that message.
"""

import importlib.util

from repro.errors import TrainerNotFoundError

if importlib.util.find_spec("litgpt") is None:
    raise TrainerNotFoundError(
        "the litgpt trainer needs LitGPT, which is not installed here; install it with: "
        "pip install -c .venv/torch-constraint.txt 'repro[litgpt]' (the constraint keeps the installed torch)"
    )
