"""The speech teacher, its distilled student and the student's int8 versions on one test set:
size, CPU real-time factor, WER and CER.

    .venv/bin/python -m bench.speech            # the 150 test utterances
    .venv/bin/python -m bench.speech --quick    # 12 of them, one timing repeat: a smoke check
    .venv/bin/python -m bench.speech --teacher DIR --student DIR --qat DIR

Rows, all on the tts test split of `SpeechDataModule` with configs/speech_student.yaml's data
settings (voices and sentences never heard in training), one utterance per forward (batch 1, no
padding, as `transformers.pipeline` transcribes):
- teacher and student: the float `save_pretrained` folders (`--teacher`, `--student`);
- student int8 dynamic / static: `quantize.quantize_dynamic` / `quantize.quantize_static` of the
  student (static calibrated on `--calibration-batches` training batches), saved with
  `save_quantized` and reloaded from disk, as a user would;
- student QAT: the int8 folder `casebook fit --config configs/speech_student_qat.yaml` exports
  (`--qat`); "not trained" when it is missing. It was fine-tuned from whichever student its config
  named, which need not be `--student`.
- student ORT float / int8 dynamic / int8 static: the student exported to ONNX and run by ONNX
  Runtime (`onnx_export.export_folder`: the float graph, `quantize_dynamic`, and `quantize_static`
  calibrated on the same training batches as the torch static row).
  `--backends torch.ao` keeps only the torch rows, `--backends onnxruntime` only ONNX Runtime's.
Columns:
- parameters: weights and biases, packed int8 ones included;
- size: MB of every file in the saved folder (weights, config, processor); for ONNX rows the
  .onnx file and the processor's files;
- real time: audio seconds transcribed per wall second (higher is faster), forward pass only;
  every utterance is run by every model in turn (so load changes hit all rows alike) `--repeats`
  times and each model's fastest run per utterance is kept (the one least slowed by the other
  jobs on these cores), then summed; with 1 and with 2 threads (torch's, and ONNX Runtime's
  intra-op threads);
- x teacher, x student: that real-time factor over the teacher's / float student's, same threads;
- WER and CER: torchmetrics over greedy CTC transcripts against the normalized references
  (logits of the 1-thread pass);
- WER LM, CER LM: the same logits decoded by beam search (`--beam-width`) with the 3-gram
  language model of the data config's training transcripts (the one `casebook fit` saves with
  its export); `--beam-width 0` leaves them out.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.ao.nn.quantized as nnq
from torchmetrics.functional.text import char_error_rate, word_error_rate
from transformers import Wav2Vec2ForCTC

from bench.common import cpu_line, load_average, machine, write_results
from casebook.common.errors import DataError
from casebook.common.tables import markdown_table
from casebook.hardware import int8_tier
from datamodules.speech.language_model import build_arpa
from lightning_modules.speech import onnx_export, quantize
from lightning_modules.speech.beam_search import beam_decoder, beam_transcripts
from lightning_modules.speech.ctc import greedy_transcripts, reference_transcripts

ROOT = Path(__file__).resolve().parent.parent
DATA_CONFIG = ROOT / "configs/speech_student.yaml"
BACKENDS = ("torch.ao", "onnxruntime")
INT8_ROWS = ("student int8 dynamic", "student int8 static", "student QAT")
INT8_ROWS += ("student ORT int8 dynamic", "student ORT int8 static")


def quiet() -> None:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")


def folder_mb(directory: Path) -> float:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file()) / 1e6


def saved_mb(path: Path) -> float:
    """A saved folder's MB, or an .onnx file's with the processor files beside it (not the other
    .onnx files there)."""
    if path.is_dir():
        return folder_mb(path)
    beside = [f for f in path.parent.iterdir() if f.is_file() and f.suffix != ".onnx"]
    return sum(f.stat().st_size for f in [path, *beside]) / 1e6


def weight_count(model: torch.nn.Module) -> int:
    """Parameters, plus the int8 weights and biases quantized modules keep packed (an ONNX
    model's initializers, without the int8 scales and zero points)."""
    if isinstance(model, onnx_export.OnnxWav2Vec2ForCTC):
        return model.weight_count()
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, (nnq.Linear, nnq.Conv1d)):
            weight, bias = module._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
        elif isinstance(module, quantize.Int8WeightOnlyConv1d):  # buffers, not parameters
            bias = module.bias
            total += module.weight_int8.numel() + (bias.numel() if bias is not None else 0)
    return total


def test_utterances(count: int | None, data_config: Path) -> tuple[list[dict], object, object]:
    """(one-utterance batches of the test split, the processor, the datamodule); the first
    `count` if given."""
    datamodule = quantize.speech_datamodule(data_config, batch_size=1)
    batches = []
    for batch in datamodule.test_dataloader():
        if count is not None and len(batches) == count:
            break
        batches.append(batch)
    return batches, datamodule.processor, datamodule


@torch.inference_mode()
def timed_pass(
    models: dict[str, Wav2Vec2ForCTC], batches: list[dict], repeats: int, threads: int
) -> tuple[dict[str, float], dict[str, list[torch.Tensor]]]:
    """Per model: the sum over utterances of the fastest of `repeats` forwards, and the logits."""
    torch.set_num_threads(threads)
    fastest = {name: [float("inf")] * len(batches) for name in models}
    logits = {name: [None] * len(batches) for name in models}
    for model in models.values():  # warm-up: first calls allocate and pack
        model(batches[0]["input_values"], attention_mask=batches[0]["attention_mask"])
    for _ in range(repeats):
        for i, batch in enumerate(batches):
            for name, model in models.items():
                start = time.perf_counter()
                out = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
                fastest[name][i] = min(fastest[name][i], time.perf_counter() - start)
                logits[name][i] = out
    return {name: sum(times) for name, times in fastest.items()}, logits


def error_rates(
    logits: list[torch.Tensor], batches: list[dict], tokenizer, decoder=None, beam_width: int = 0
) -> tuple[float, float]:
    """WER and CER of greedy transcripts, or of beam search with `decoder` when given."""
    predictions, references = [], []
    for out, batch in zip(logits, batches):
        valid = torch.ones(out.shape[:2], dtype=torch.bool)  # one unpadded utterance
        if decoder is None:
            predictions += greedy_transcripts(out, valid, tokenizer)
        else:
            predictions += beam_transcripts(decoder, out, valid, beam_width)
        references += reference_transcripts(batch["labels"], tokenizer)
    return float(word_error_rate(predictions, references)), float(
        char_error_rate(predictions, references)
    )


def build_models(args, root: Path) -> tuple[dict, dict, dict]:
    """(models by row, their saved folder or .onnx file, rows that could not be built and why)."""
    student = onnx_export.load_float(args.student)
    folders = {"teacher": Path(args.teacher), "student": Path(args.student)}
    models = {"teacher": onnx_export.load_float(args.teacher), "student": student}
    start = time.perf_counter()
    calibration = quantize.calibration_batches(args.data_config, args.calibration_batches)
    if "torch.ao" in args.backends:
        quantized = {
            "student int8 dynamic": ("dynamic", quantize.quantize_dynamic(student)),
            "student int8 static": ("static", quantize.quantize_static(student, calibration)),
        }
        for name, (mode, model) in quantized.items():
            folders[name] = quantize.save_quantized(model, root / mode, mode)
            models[name] = quantize.load_quantized(folders[name])
    if "onnxruntime" in args.backends:
        files = onnx_export.export_folder(
            args.student, root / "onnx", ["dynamic", "static"], calibration
        )
        for mode, label in (
            ("float", "float"),
            ("dynamic", "int8 dynamic"),
            ("static", "int8 static"),
        ):
            folders[f"student ORT {label}"] = files[mode]
            models[f"student ORT {label}"] = onnx_export.OnnxWav2Vec2ForCTC(files[mode])
    print(f"quantized and exported in {time.perf_counter() - start:.1f} s", flush=True)
    missing = {}
    if not args.qat or "torch.ao" not in args.backends:
        pass  # no QAT row asked for
    elif (Path(args.qat) / quantize.META_FILE).exists():
        folders["student QAT"] = Path(args.qat)
        models["student QAT"] = quantize.load_quantized(args.qat)
    else:
        missing["student QAT"] = f"not trained ({args.qat} missing)"
    return models, folders, missing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 utterances, one repeat")
    parser.add_argument("--teacher", default="runs/speech_teacher/hf")
    parser.add_argument("--student", default="runs/speech_student/student_hf")
    parser.add_argument(
        "--qat", default="runs/speech_student_qat/student_int8_qat", help="'' for no QAT row"
    )
    parser.add_argument("--utterances", type=int, default=None, help="default: all (quick: 12)")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (default 3)")
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument(
        "--beam-width", type=int, default=16, help="beam of the WER LM columns; 0: none"
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="which int8 rows: torch.ao eager (dynamic, static, QAT), ONNX Runtime (float, int8)",
    )
    parser.add_argument(
        "--data-config", type=Path, default=DATA_CONFIG, help="config whose data.init_args to use"
    )
    parser.add_argument("--name", default=None, help="results file name (default: speech[_quick])")
    args = parser.parse_args(argv)
    if args.utterances is None:
        args.utterances = 12 if args.quick else None
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    quiet()
    began, started = time.perf_counter(), machine()
    print(f"{started['date']}, {cpu_line()}, load {started['load_average']}", flush=True)
    print(vars(args), flush=True)

    batches, processor, datamodule = test_utterances(args.utterances, args.data_config)
    decoder = None
    if args.beam_width:
        with tempfile.TemporaryDirectory(prefix="bench_speech_lm_") as lm_dir:
            arpa = build_arpa(datamodule.transcripts("train"), Path(lm_dir) / "train-3gram.arpa")
            decoder = beam_decoder(processor.tokenizer, arpa)
    audio_seconds = (
        sum(b["input_values"].shape[1] for b in batches) / processor.feature_extractor.sampling_rate
    )
    with tempfile.TemporaryDirectory(prefix="bench_speech_") as root:
        try:
            models, folders, missing = build_models(args, Path(root))
        except DataError as error:
            print(f"bench.speech: error: {error}", file=sys.stderr)
            sys.exit(2)
        sizes = {name: saved_mb(folder) for name, folder in folders.items()}
        seconds, logits, loads = {}, None, {}
        for threads in args.threads:
            load_before = load_average()[0]
            seconds[threads], pass_logits = timed_pass(models, batches, args.repeats, threads)
            loads[threads] = f"{load_before:.1f}-{load_average()[0]:.1f}"
            logits = logits or pass_logits
            print(f"  {threads} thread(s): {seconds[threads]}", flush=True)
        counts = {name: weight_count(model) for name, model in models.items()}

    rows = []
    for name in [*models, *missing]:
        if name in missing:
            rows.append({"model": name, "parameters": missing[name]})
            continue
        wer, cer = error_rates(logits[name], batches, processor.tokenizer)
        row = {
            "model": name,
            "parameters": f"{counts[name] / 1e6:.2f} M",
            "size (MB)": sizes[name],
            "x smaller than student": sizes["student"] / sizes[name],
        }
        for threads in args.threads:
            row[f"real time, {threads} thr"] = audio_seconds / seconds[threads][name]
            row[f"x teacher, {threads} thr"] = seconds[threads]["teacher"] / seconds[threads][name]
            row[f"x student, {threads} thr"] = seconds[threads]["student"] / seconds[threads][name]
        row |= {"WER": wer, "CER": cer}
        if decoder is not None:
            row["WER LM"], row["CER LM"] = error_rates(
                logits[name], batches, processor.tokenizer, decoder, args.beam_width
            )
        rows.append(row)
    columns = list(rows[0])
    print(
        f"\n{len(batches)} test utterances, {audio_seconds:.0f} s of audio, batch 1, "
        f"fastest of {args.repeats} per utterance; {cpu_line()}; "
        f"load (1 min) per thread count: {loads}\n"
    )
    print(markdown_table(rows, columns))
    by = {row["model"]: row for row in rows}
    tier = int8_tier()
    print(
        f"\nint8 tier of this CPU: {tier}; "
        + (
            "the int8 speed target (>= 1.5x) applies"
            if tier in ("vnni", "amx")
            else "no VNNI: the speed target is bounded by Amdahl's law (bench.speech_shapes)"
        )
    )
    for name in (n for n in INT8_ROWS if n in models and 1 in args.threads):
        int8 = by[name]
        print(
            f"{name} vs float student: {int8['x smaller than student']:.2f}x smaller "
            f"(target >= 3), {int8['x student, 1 thr']:.2f}x faster on 1 thread (target >= 1.5), "
            f"WER {100 * (int8['WER'] - by['student']['WER']):+.1f} points (target within 1)"
        )
    finished = machine()
    minutes = (time.perf_counter() - began) / 60
    print(f"\n{finished['date']}, load {finished['load_average']}, {minutes:.1f} min")
    write_results(
        args.name or ("speech_quick" if args.quick else "speech"),
        {
            "started": started,
            "finished": finished,
            "args": vars(args),
            "utterances": len(batches),
            "audio_seconds": audio_seconds,
            "rows": rows,
            "seconds": seconds,
            "load_per_threads": loads,
        },
    )


if __name__ == "__main__":
    main()
