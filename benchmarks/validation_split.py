"""How much does the validation set alone move the baseline's validation loss?

`litgpt pretrain` on a folder of text files (LitGPT's ``TextFiles`` data module) validates on the
*first* file in sorted order and trains on the rest; ``repro run baseline`` validates on the last 5%
of the concatenated token stream. To compare the two validation sets on one model, this trains the
baseline once with the first play held out (``repro run baseline --data`` on the other 37 plays, a
signed manifest like any run), then scores the finished model on both held-out sets with one
estimator: the mean loss over every non-overlapping ``block_size`` window of each set.

    python benchmarks/validation_split.py [--out runs/validation-split] [--steps 300] [--reuse]
        [--litgpt-checkpoint out/final/lit_model.pth]

Prints, as JSON: the run's recorded validation loss (its own 20 fixed batches), and for each held-out
set its tokens, bytes, windows, mean loss in nats per token and bits per byte. ``--reuse`` scores an
existing run in ``--out`` instead of training again. ``--litgpt-checkpoint`` also scores a model that
``litgpt pretrain`` trained (the seed architecture at the run's dimensions, e.g. on the same 38 plays
as flat .txt files with the run's tokenizer): its loss on the same first play, with the same tokens
and estimator, side by side with repro's.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _score(loss: Callable[[Any, Any], Any], ids: Any, block: int, batch: int) -> float:
    """Mean of ``loss(x, y)`` over every non-overlapping window of ``ids`` (block inputs, shifted targets)."""
    import torch

    n = (len(ids) - 1) // block
    total, count = 0.0, 0
    with torch.no_grad():
        for first in range(0, n, batch):
            starts = range(first * block, min(first + batch, n) * block, block)
            x = torch.stack([ids[s:s + block] for s in starts])
            y = torch.stack([ids[s + 1:s + block + 1] for s in starts])
            total += float(loss(x, y)) * len(starts)
            count += len(starts)
    return total / count


def _litgpt_loss(checkpoint: Path, run_config: dict[str, Any]) -> Callable[[Any, Any], Any]:
    """The mean cross-entropy of a ``litgpt pretrain`` checkpoint's model (seed architecture)."""
    import torch
    from litgpt.model import GPT
    from torch.nn import functional as F

    from repro.trainer.litgpt.trainer import LitGPTConfig, litgpt_config

    model = GPT(litgpt_config(LitGPTConfig.model_validate(run_config)))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    weights = state.get("model", state)
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in weights.items()})
    model.eval()

    def loss(x: Any, y: Any) -> Any:
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/validation-split", help="folder for the corpus copy and the run")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="score the run already in --out")
    parser.add_argument("--litgpt-checkpoint", type=Path, help="also score this litgpt pretrain lit_model.pth")
    args = parser.parse_args()

    import torch

    from repro.cli import main as repro_main
    from repro.files.paths import cache_dir
    from repro.records.checkpoint import load_state
    from repro.records.manifest_file import load_manifest, run_folder
    from repro.running.config import resolve_run
    from repro.trainer.gpt import data as gpt_data
    from repro.trainer_api import TrainerContext

    out = Path(args.out).resolve()
    corpus = gpt_data.load_corpus(None)
    (held_name, held_bytes), rest = corpus.files[0], corpus.files[1:]
    folder = out / "corpus"
    manifest_path = out / "run.json"
    if not args.reuse:
        shutil.rmtree(folder, ignore_errors=True)
        for name, content in rest:  # the same relative names, so the same sorted order
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        code = repro_main(["run", "baseline", "--data", str(folder), "--steps", str(args.steps),
                           "--out", str(manifest_path)])
        if code != 0:
            sys.exit(code)
    manifest = load_manifest(manifest_path).manifest

    torch.set_num_threads(manifest.run.settings.threads)
    torch.use_deterministic_algorithms(True)
    resolved = resolve_run("baseline", config_overrides=manifest.run.config)
    folder_of_run = run_folder(manifest_path)
    ctx = TrainerContext(settings=resolved.settings, device=torch.device("cpu"), cache_dir=cache_dir(),
                         artifact_dir=out / "scratch")
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    trainer = resolved.trainer_class(resolved.config, ctx)
    trainer.prepare_data()
    trainer.build()
    trainer.load_state_tensors(load_state(manifest_path.parent / manifest.checkpoints[-1].path,
                                                 manifest.checkpoints[-1].sha256))
    recorded = manifest.validation[-1].loss
    again = trainer.validate()

    tokenizer = (folder_of_run / "tokenizer.model").read_bytes()
    held_ids = torch.from_numpy(gpt_data.encode(tokenizer, held_bytes.decode("utf-8"), cache_dir()).astype("int64"))
    extra = manifest.data.extra
    sets = {
        f"first play held out ({held_name}), as litgpt pretrain's TextFiles": (held_ids, len(held_bytes)),
        "last 5% of the token stream, as repro run baseline": (trainer.val_tokens, int(extra["val_bytes"])),
    }
    result: dict[str, Any] = {
        "manifest": str(manifest_path), "steps": manifest.run.config["steps"],
        "recorded_val_loss": recorded, "recomputed_val_loss": again, "sets": {},
    }
    trainer.model.eval()
    models = {"repro": trainer._loss}
    if args.litgpt_checkpoint:
        models["litgpt pretrain"] = _litgpt_loss(args.litgpt_checkpoint, manifest.run.config)
    block = trainer.cfg.block_size
    for label, (ids, n_bytes) in sets.items():
        for model_name, loss_fn in models.items():
            loss = _score(loss_fn, ids, block, trainer.cfg.batch_size)
            result["sets"].setdefault(label, {"tokens": len(ids), "bytes": n_bytes,
                                              "windows": (len(ids) - 1) // block})[model_name] = {
                "nats_per_token": loss, "bits_per_byte": loss * len(ids) / n_bytes / math.log(2),
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
