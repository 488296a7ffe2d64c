"""The PyTorch Lightning adapter (optional extra ``repro[lightning]``): see :mod:`.adapter`.

Importing this package checks that Lightning is installed, without importing it (that costs
seconds); a missing Lightning is a :class:`~repro.errors.TrainerNotFoundError` that says how to
install it, so ``repro run --trainer lightning`` and an audit of a Lightning run exit 4 with that
message, and ``repro trainers`` shows it.
"""

import importlib.util

from repro.errors import TrainerNotFoundError

if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
    raise TrainerNotFoundError(
        "the lightning trainer needs PyTorch Lightning, which is not installed here; "
        "install it with: pip install 'repro[lightning]'"
    )
