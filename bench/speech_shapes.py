"""Are the speech targets bound by the model's shape or by this CPU? The same distillation and
quantization, timed on two architectures: casebook's teacher and wav2vec2-base.

    .venv/bin/python -m bench.speech_shapes              # 20 test utterances, ~2.5 min
    .venv/bin/python -m bench.speech_shapes --quick      # 4 utterances, one repeat

`bench.speech` measures the trained models. Its speed targets (student >= 1.8x faster than the
teacher, int8 dynamic >= 3x smaller and >= 1.5x faster than the float student) come from anchors
measured on wav2vec2-base-sized models. This script asks what those ratios are for each shape,
with weights that do not matter for time or size (untrained, built from a config: no download):
- `casebook`: configs/speech_teacher.yaml's architecture (4 layers of 256, two convolutions);
- `wav2vec2-base`: `Wav2Vec2Config()`'s defaults, the architecture of facebook/wav2vec2-base
  (12 layers of 768, seven convolutions of 512).
For each: the teacher, the half-depth student `Wav2Vec2Distiller` would build
(`student_from_teacher` with the `alternate` layer map), and that student's int8 dynamic and
static versions (`quantize.quantize_dynamic`, `quantize.quantize_static` calibrated on 4
training batches), saved and measured on disk as `bench.speech` does.

Two tables:
1. size and real-time factor, one torch thread, batch 1, on the first `--utterances` test
   utterances of configs/speech_student.yaml's data; each model's fastest of `--repeats` runs
   per utterance, models taking turns per utterance (as in `bench.speech`);
2. where the float models' time goes (forward hooks, same utterances, fastest of `--repeats`
   per utterance): the transformer
   layers, the feature encoder's convolutions, the positional convolution, and every
   `nn.Linear`. Amdahl's law then bounds the two speed-ups:
   - dropping half the layers: at most 1 / (1 - layers / 2);
   - int8 Linear layers that run k times faster: at most 1 / (1 - linear + linear / k), with k
     measured here: the float student's time in its Linear layers over the int8 dynamic
     student's time in its quantized ones.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.ao.nn.quantized.dynamic as nnqd
import yaml
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from bench.common import load_average, machine, write_results
from bench.speech import DATA_CONFIG, folder_mb, quiet, test_utterances, timed_pass, weight_count
from casebook.common.tables import markdown_table
from lightning_modules.speech import quantize
from lightning_modules.speech.distiller import resolve_layer_map, student_from_teacher

ROOT = Path(__file__).resolve().parent.parent
TEACHER_CONFIG = ROOT / "configs/speech_teacher.yaml"
CALIBRATION_BATCHES = 4
LINEAR_TYPES = (nn.Linear, nnqd.Linear)  # float, and int8 dynamic


def casebook_config(vocab_size: int, pad_token_id: int) -> Wav2Vec2Config:
    """The architecture configs/speech_teacher.yaml trains, as `Wav2Vec2CTCRecipe` builds it."""
    from lightning_modules.speech import Wav2Vec2CTCRecipe

    arguments = yaml.safe_load(TEACHER_CONFIG.read_text())["model"]["init_args"]
    recipe = Wav2Vec2CTCRecipe(vocab_size=vocab_size, pad_token_id=pad_token_id, **arguments)
    return recipe.model.config


def base_config(vocab_size: int, pad_token_id: int) -> Wav2Vec2Config:
    """facebook/wav2vec2-base's architecture: `Wav2Vec2Config`'s defaults."""
    return Wav2Vec2Config(vocab_size=vocab_size, pad_token_id=pad_token_id)


SHAPES = {"casebook": casebook_config, "wav2vec2-base": base_config}


def build_shape(config: Wav2Vec2Config, calibration: list[dict], root: Path) -> dict:
    """Row name -> (model as reloaded from disk, its folder)."""
    torch.manual_seed(0)
    teacher = Wav2Vec2ForCTC(config).eval()
    layer_map = resolve_layer_map("alternate", config.num_hidden_layers)
    student = student_from_teacher(teacher, layer_map).eval()
    built = {}
    for name, model in (("teacher", teacher), ("student", student)):
        model.save_pretrained(root / name)
        built[name] = (Wav2Vec2ForCTC.from_pretrained(root / name).eval(), root / name)
    for mode, model in (
        ("dynamic", quantize.quantize_dynamic(student)),
        ("static", quantize.quantize_static(student, calibration)),
    ):
        folder = quantize.save_quantized(model, root / mode, mode)
        built[f"student int8 {mode}"] = (quantize.load_quantized(folder), folder)
    return built


class TimeShares:
    """Wall seconds inside chosen modules during forwards, from forward pre- and post-hooks."""

    def __init__(self, model: Wav2Vec2ForCTC) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.handles = []
        encoder = model.wav2vec2.encoder
        groups = {
            "transformer layers": list(encoder.layers),
            "feature encoder": [model.wav2vec2.feature_extractor],
            "positional conv": [encoder.pos_conv_embed],
            "Linear": [m for m in model.modules() if isinstance(m, LINEAR_TYPES)],
        }
        for group, modules in groups.items():
            for module in modules:
                self._watch(group, module)

    def _watch(self, group: str, module: nn.Module) -> None:
        started: list[float] = []

        def before(*_):
            started.append(time.perf_counter())

        def after(*_):
            self.seconds[group] += time.perf_counter() - started.pop()

        self.handles += [
            module.register_forward_pre_hook(before),
            module.register_forward_hook(after),
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.inference_mode()
def time_shares(
    model: Wav2Vec2ForCTC, batches: list[dict], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Share of the forward's wall time in each group (Linear overlaps the others), summed over
    the utterances, each utterance's fastest of `repeats` forwards kept (as the speed table)."""
    model(batches[0]["input_values"], attention_mask=batches[0]["attention_mask"])  # warm-up
    shares = TimeShares(model)
    kept: dict[str, float] = defaultdict(float)
    total = 0.0
    for batch in batches:
        fastest, groups = math.inf, {}
        for _ in range(repeats):
            shares.seconds.clear()
            start = time.perf_counter()
            model(batch["input_values"], attention_mask=batch["attention_mask"])
            if (elapsed := time.perf_counter() - start) < fastest:
                fastest, groups = elapsed, dict(shares.seconds)
        total += fastest
        for group, seconds in groups.items():
            kept[group] += seconds
    shares.remove()
    return {group: seconds / total for group, seconds in kept.items()}, dict(kept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 utterances, one repeat")
    parser.add_argument("--utterances", type=int, default=None, help="default 20 (quick: 4)")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (default 3)")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--data-config", type=Path, default=DATA_CONFIG)
    args = parser.parse_args(argv)
    args.utterances = args.utterances or (4 if args.quick else 20)
    args.repeats = args.repeats or (1 if args.quick else 3)
    quiet()
    torch.set_num_threads(1)
    began, started = time.perf_counter(), machine()
    print(f"{started['date']}, load {started['load_average']}, {vars(args)}", flush=True)
    batches, processor, _ = test_utterances(args.utterances, args.data_config)
    calibration = quantize.calibration_batches(args.data_config, CALIBRATION_BATCHES)
    rate = processor.feature_extractor.sampling_rate
    audio_seconds = sum(b["input_values"].shape[1] for b in batches) / rate
    tokenizer = processor.tokenizer
    size_rows, share_rows, loads = [], [], {}
    for shape in args.shapes:
        config = SHAPES[shape](len(tokenizer), tokenizer.pad_token_id)
        with tempfile.TemporaryDirectory(prefix=f"bench_shapes_{shape}_") as root:
            built = build_shape(config, calibration, Path(root))
            sizes = {name: folder_mb(folder) for name, (_, folder) in built.items()}
            models = {name: model for name, (model, _) in built.items()}
            load_before = load_average()[0]
            seconds, _ = timed_pass(models, batches, args.repeats, threads=1)
            loads[shape] = f"{load_before:.1f}-{load_average()[0]:.1f}"
            print(f"{shape}: timed ({(time.perf_counter() - began) / 60:.1f} min)", flush=True)
            for name, model in models.items():
                size_rows.append(
                    {
                        "shape": shape,
                        "model": name,
                        "layers": model.config.num_hidden_layers,
                        "parameters": f"{weight_count(model) / 1e6:.2f} M",
                        "size (MB)": sizes[name],
                        "x smaller than student": sizes["student"] / sizes[name],
                        "real time, 1 thr": audio_seconds / seconds[name],
                        "x teacher": seconds["teacher"] / seconds[name],
                        "x student": seconds["student"] / seconds[name],
                    }
                )
            shares, seconds_in = {}, {}
            for name in ("teacher", "student", "student int8 dynamic"):
                shares[name], seconds_in[name] = time_shares(models[name], batches, args.repeats)
            # how much faster the int8 Linear layers ran than the float ones, same inputs
            k = seconds_in["student"]["Linear"] / seconds_in["student int8 dynamic"]["Linear"]
            for name in ("teacher", "student", "student int8 dynamic"):
                layers, linear = shares[name]["transformer layers"], shares[name]["Linear"]
                share_rows.append(
                    {
                        "shape": shape,
                        "model": name,
                        "transformer layers": f"{100 * layers:.0f}%",
                        "feature encoder": f"{100 * shares[name]['feature encoder']:.0f}%",
                        "positional conv": f"{100 * shares[name]['positional conv']:.0f}%",
                        "Linear (all)": f"{100 * linear:.0f}%",
                        "Linear (ms)": 1e3 * seconds_in[name]["Linear"],
                        "bound: half the layers": 1 / (1 - layers / 2)
                        if name == "teacher"
                        else math.nan,
                        "int8 Linear x faster": k if name == "student int8 dynamic" else math.nan,
                        "bound: int8 Linear": 1 / (1 - linear + linear / k)
                        if name == "student"
                        else math.nan,
                    }
                )
    print(
        f"\n{len(batches)} test utterances, {audio_seconds:.0f} s of audio, batch 1, one torch "
        f"thread, fastest of {args.repeats} per utterance; load (1 min) per shape: {loads}\n"
    )
    print(markdown_table(size_rows))
    print("\nWhere the float models' time goes (Linear overlaps the other columns):\n")
    print(markdown_table(share_rows))
    finished = machine()
    print(
        f"\n{finished['date']}, load {finished['load_average']}, "
        f"{(time.perf_counter() - began) / 60:.1f} min"
    )
    write_results(
        "speech_shapes_quick" if args.quick else "speech_shapes",
        {
            "started": started,
            "finished": finished,
            "args": vars(args),
            "audio_seconds": audio_seconds,
            "sizes_and_speed": size_rows,
            "time_shares": share_rows,
            "load_per_shape": loads,
        },
    )


if __name__ == "__main__":
    main()
