"""The argument parser every command is added to: it raises instead of exiting."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

from repro import errors

if TYPE_CHECKING:
    from repro.audits.options import Tolerance

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so ``main()`` decides the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise errors.UsageError(f"{self.prog}: {message}")


def add_tolerance_arguments(p: argparse.ArgumentParser) -> None:
    """``--atol``, ``--rtol``, ``--grad-rtol``, ``--tensor-rtol``: the same flags, help and defaults in
    every command that judges (audit, diff). Unset flags stay unset: the defaults depend on the
    precision of the runs compared (the judgment core decides)."""
    from repro.audits.options import (
        BF16_TOLERANCE,
        DEFAULT_GRAD_RTOL,
        DEFAULT_LOSS_ATOL,
        DEFAULT_LOSS_RTOL,
        DEFAULT_TENSOR_RTOL,
    )

    bf16 = "; bf16-mixed runs: {:g}"
    p.add_argument("--atol", type=float, help=f"absolute tolerance per step (default {DEFAULT_LOSS_ATOL:g}"
                   + bf16.format(BF16_TOLERANCE.atol) + ")")
    p.add_argument("--rtol", type=float, help=f"relative tolerance per step (default {DEFAULT_LOSS_RTOL:g}"
                   + bf16.format(BF16_TOLERANCE.rtol) + ")")
    p.add_argument("--grad-rtol", type=float,
                   help=f"relative tolerance on gradient norms (default {DEFAULT_GRAD_RTOL:g}"
                   + bf16.format(BF16_TOLERANCE.grad_rtol) + ")")
    p.add_argument("--tensor-rtol", type=float,
                   help=f"relative L2 tolerance per checkpoint tensor (default {DEFAULT_TENSOR_RTOL:g}"
                   + bf16.format(BF16_TOLERANCE.tensor_rtol) + ")")


def tolerance_from(args: argparse.Namespace) -> Tolerance:
    """The tolerance the user set with :func:`add_tolerance_arguments`' flags (only those given)."""
    from pydantic import ValidationError

    from repro.audits.options import Tolerance

    given = {k: v for k, v in (("atol", args.atol), ("rtol", args.rtol), ("grad_rtol", args.grad_rtol),
                               ("tensor_rtol", args.tensor_rtol)) if v is not None}
    try:
        return Tolerance(**given)
    except ValidationError as exc:
        from repro.records.validation import option_problem

        raise errors.UsageError(option_problem(exc)) from exc
