"""How much does the validation set alone move the baseline's validation loss?

`litgpt pretrain` on a folder of text files (LitGPT's ``TextFiles`` data module) validates on the
*first* file in sorted order and trains on the rest; ``repro run baseline`` validates on the last 5%
of the concatenated token stream. To compare the two validation sets on one model, this trains the
baseline once with the first play held out (``repro run baseline --data`` on the other 37 plays, a
signed manifest like any run), then scores the finished model on both held-out sets with one
estimator: the mean loss over every non-overlapping ``block_size`` window of each set.

    python benchmarks/validation_split.py [--out runs/validation-split] [--steps 300]

Prints, as JSON: the run's recorded validation loss (its own 20 fixed batches), and for each held-out
set its tokens, bytes, windows, mean loss in nats per token and bits per byte.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any


def _score(trainer: Any, ids: Any, batch: int) -> float:
    """Mean loss over every non-overlapping window of ``ids`` (block_size inputs, shifted targets)."""
    import torch

    block = trainer.cfg.block_size
    n = (len(ids) - 1) // block
    total, count = 0.0, 0
    trainer.model.eval()
    with torch.no_grad():
        for first in range(0, n, batch):
            starts = range(first * block, min(first + batch, n) * block, block)
            x = torch.stack([ids[s:s + block] for s in starts])
            y = torch.stack([ids[s + 1:s + block + 1] for s in starts])
            total += float(trainer._loss(x, y)) * len(starts)
            count += len(starts)
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/validation-split", help="folder for the corpus copy and the run")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()

    import torch

    from repro.checkpoint import load_state
    from repro.cli import main as repro_main
    from repro.config import resolve_run
    from repro.manifest import load_manifest, run_folder
    from repro.paths import cache_dir
    from repro.trainer.gpt import data as gpt_data
    from repro.trainer_api import TrainerContext

    out = Path(args.out).resolve()
    corpus = gpt_data.load_corpus(None)
    (held_name, held_bytes), rest = corpus.files[0], corpus.files[1:]
    folder = out / "corpus"
    shutil.rmtree(folder, ignore_errors=True)
    for name, content in rest:  # the same relative names, so the same sorted order
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    manifest_path = out / "run.json"
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
    for label, (ids, n_bytes) in sets.items():
        loss = _score(trainer, ids, trainer.cfg.batch_size)
        result["sets"][label] = {
            "tokens": len(ids), "bytes": n_bytes, "windows": (len(ids) - 1) // trainer.cfg.block_size,
            "nats_per_token": loss, "bits_per_byte": loss * len(ids) / n_bytes / math.log(2),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
