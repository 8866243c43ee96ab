"""How fast the speech teacher trains, per lever: torch threads, bf16 autocast and batch size in
audio seconds, on real training batches of the tts corpus (one process, same run, same batches).

    .venv/bin/python -m bench.speech_teacher_speed            # 8 variants, ~2 min
    .venv/bin/python -m bench.speech_teacher_speed --steps 3  # quicker, noisier

Each variant trains `configs/speech_teacher.yaml`'s model (fresh, seeded) for `--steps` AdamW
steps after two warm-up steps, with the recipe's SpecAugment, and reports audio seconds trained
per wall second; "x previous" is the ratio to the previous recipe's setting (1 thread, float32,
batches of 4 utterances / 12 s) measured in the same run. bf16 rows are measured only on a CPU
with bf16 hardware (AVX-512 BF16 or AMX): elsewhere oneDNN emulates bf16 and the CLI refuses it.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
import yaml

from bench.common import cpu_line, machine, write_results
from casebook.common.tables import markdown_table
from casebook.hardware import native_bf16
from datamodules.speech import SpeechDataModule
from lightning_modules.speech import Wav2Vec2CTCRecipe

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs/speech_teacher.yaml"
PREVIOUS = (1, False, 4, 12.0)  # threads, bf16, utterances, seconds: the 50-minute recipe


def batches(batch_size: int, seconds: float, count: int) -> list[dict]:
    """The first `count` training batches of the teacher config's corpus at this batch size."""
    data = yaml.safe_load(CONFIG.read_text())["data"]["init_args"]
    batching = data.get("batching", {}) | {"max_batch_seconds": seconds}
    datamodule = SpeechDataModule(**data | {"batch_size": batch_size, "batching": batching})
    datamodule.prepare_data()
    datamodule.setup("fit")
    return list(itertools.islice(iter(datamodule.train_dataloader()), count))


def audio_per_second(threads: int, bf16: bool, loaded: list[dict]) -> float:
    """Audio seconds per wall second over `loaded` after two warm-up steps."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model_args = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]
    recipe = Wav2Vec2CTCRecipe(**model_args).train()
    optimizer = torch.optim.AdamW(recipe.parameters(), lr=1e-3)

    def step(batch: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = recipe.model_step(batch, "train")["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for batch in loaded[:2]:
        step(batch)
    start = time.perf_counter()
    for batch in loaded[2:]:
        step(batch)
    seconds = sum(float(b["attention_mask"].sum()) / 16000 for b in loaded[2:])
    return seconds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    args = parser.parse_args(argv)
    info = machine()
    print(f"{info['date']}, {cpu_line()}, load {info['load_average']}", flush=True)
    precisions = (False, True) if native_bf16() else (False,)
    variants = [
        (threads, bf16, size, seconds)
        for threads in (1, 2)
        for bf16 in precisions
        for size, seconds in ((4, 12.0), (32, 30.0))
    ]
    loaded = {
        (size, seconds): batches(size, seconds, args.steps + 2)
        for size, seconds in {(4, 12.0), (32, 30.0)}
    }
    rates = {v: audio_per_second(v[0], v[1], loaded[v[2:]]) for v in variants}
    rows = [
        {
            "threads": threads,
            "precision": "bf16-mixed" if bf16 else "32-true",
            "batch": f"≤{size} utt / {seconds:.0f} s",
            "audio s / s": rates[threads, bf16, size, seconds],
            "x previous": rates[threads, bf16, size, seconds] / rates[PREVIOUS],
        }
        for threads, bf16, size, seconds in variants
    ]
    finished = machine()
    print(markdown_table(rows, list(rows[0])))
    print(f"\n{finished['date']}, load {finished['load_average']}")
    write_results("speech_teacher_speed", {"started": info, "finished": finished, "rows": rows})


if __name__ == "__main__":
    main()
