"""The PyTorch Lightning adapter (optional extra ``repro-audit[lightning]``): see :mod:`.adapter`.

Importing this package checks that Lightning is installed, without importing it (that costs
seconds); a missing Lightning is a :class:`~repro.errors.OptionalTrainerMissing` that says how to
install it, so ``repro run --trainer lightning`` and an audit of a Lightning run exit 4 with that
message, and ``repro trainers`` leaves the trainer out (an extra the user does not use).
"""

import importlib.util

from repro.errors import OptionalTrainerMissing

if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
    raise OptionalTrainerMissing(
        "the lightning trainer needs PyTorch Lightning, which is not installed here; "
        "install it with: pip install 'repro-audit[lightning]' (pin torch as docs/install.md shows)"
    )
