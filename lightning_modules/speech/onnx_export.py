"""ONNX export of a wav2vec2 CTC folder and its ONNX Runtime int8 versions: a deployment path
whose model runs on onnxruntime alone (the processor's files beside it turn logits into text).

    python -m lightning_modules.speech.onnx_export runs/speech_student/student_hf
    python -m lightning_modules.speech.onnx_export runs/speech_student/student_hf runs/speech_student/student_onnx --int8 dynamic static [--calibration-batches 8] [--data-config configs/speech_student.yaml]
    python -m lightning_modules.speech.onnx_export --transcribe runs/speech_student/student_onnx/model_int8_dynamic.onnx a.wav b.wav

The first form writes `model.onnx` (float32) and the processor into a sibling folder
(`student_hf` -> `student_hf_onnx`); `--int8` adds `model_int8_dynamic.onnx` and
`model_int8_static.onnx` next to it. Any `save_pretrained` `Wav2Vec2ForCTC` folder works: the
teacher's export too.

- Export (`export_onnx`): torch's TorchScript exporter (`dynamo=False`), one input
  `input_values` (batch, samples) with both axes dynamic, one output `logits` (batch, frames,
  vocabulary). The dynamo exporter also gives the same logits but needs onnxscript and exported
  several times slower (bench/README.md). The positional convolution's weight norm is folded first
  (`quantize.fold_positional_weight_norm`), so the graph holds its weight as a plain initializer
  that int8 can quantize. No `attention_mask` input: one unpadded utterance per call, as
  `transformers.pipeline` transcribes; `OnnxWav2Vec2ForCTC` runs a padded batch row by row.
- Both int8 modes store every MatMul's (the Linear layers') and every Conv's weight in int8 per
  output channel, but the first convolution's: it reads the waveform, and int8 activations there
  move the logits far more than anywhere else (`quantize.quantized_layer_names`, bench/README.md).
- int8 dynamic (`quantize_onnx_dynamic`, no calibration): ONNX Runtime's `quantize_dynamic` for
  the MatMuls (activations quantized per call, uint8: x86's int8 kernels multiply uint8 by
  int8), and the convolutions int8 weight-only (`weight_only_convolutions`), as torch's dynamic
  mode does: ONNX Runtime's own dynamic Conv was slower than float.
- int8 static (`quantize_onnx_static`): `quantize_static` in QDQ format (quantize/dequantize
  pairs that ONNX Runtime fuses into int8 kernels), MatMul and Conv, activations uint8 with
  min/max ranges observed on unpadded training utterances (`UtteranceReader`). uint8 rather than
  int8 activations (S8S8), which gave the same logits but ran slower (bench/README.md); min/max
  because the percentile and entropy calibrators need equal-length utterances.

Speed and accuracy against the torch rows, per CPU: bench/README.md (`bench.speech`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnxruntime import quantization as ortq
from torch import Tensor
from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor
from transformers.modeling_outputs import CausalLMOutput

from casebook.common.errors import DataError, first_line
from lightning_modules.speech import quantize

FLOAT_FILE = "model.onnx"
INT8_FILES = {"dynamic": "model_int8_dynamic.onnx", "static": "model_int8_static.onnx"}
OPSET = 17  # LayerNormalization is an ONNX op from 17 on
STATIC_OPS = ["MatMul", "Conv"]
# onnxruntime's pybind errors (Fail, InvalidProtobuf, NoSuchFile, InvalidGraph, ...) all derive
# from Exception directly, with no common base of their own
ONNXRUNTIME_ERRORS = tuple(
    error
    for error in vars(ort.capi.onnxruntime_pybind11_state).values()
    if isinstance(error, type) and issubclass(error, Exception)
)


def load_float(folder: str | Path) -> Wav2Vec2ForCTC:
    """The float `Wav2Vec2ForCTC` of a `save_pretrained` folder, or one DataError line."""
    try:
        return Wav2Vec2ForCTC.from_pretrained(str(folder)).eval()
    except (OSError, ValueError):
        raise DataError(
            f"{folder}: not a save_pretrained Wav2Vec2ForCTC folder (no config.json and weights); "
            "`casebook fit --config configs/speech_teacher.yaml` exports a teacher, "
            "`casebook fit --config configs/speech_student.yaml` a student"
        ) from None


# ---------------------------------------------------------------------------- export


@torch.no_grad()
def export_onnx(model: Wav2Vec2ForCTC, path: str | Path, example_samples: int = 16000) -> Path:
    """Write `model` (float, CPU) as ONNX to `path`: input `input_values` (batch, samples), output
    `logits` (batch, frames, vocabulary), batch and time axes dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = quantize.fold_positional_weight_norm(copy.deepcopy(model)).float().cpu().eval()
    example = torch.zeros(1, example_samples)
    with warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice, and the two tracer warnings that hold
        # for every length: transformers' attention deciding is_causal (False: no mask, not
        # causal) in Python, and group norm's training-only batch size check. Any other tracer
        # warning (a length-dependent branch) is shown.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings(
            "ignore",
            category=torch.jit.TracerWarning,
            module=r"(transformers\.integrations\.sdpa_attention|torch\.nn\.functional)$",
        )
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input_values"],
            output_names=["logits"],
            dynamic_axes={
                "input_values": {0: "batch", 1: "samples"},
                "logits": {0: "batch", 1: "frames"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def first_convolution(path: str | Path) -> list[str]:
    """The name of the Conv node that reads the waveform (the feature encoder's first), which int8
    leaves float: the first Conv of the graph, whose nodes are in topological order."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return [next(node.name for node in graph.node if node.op_type == "Conv")]


def quantize_onnx_dynamic(float_path: str | Path, int8_path: str | Path) -> Path:
    """ONNX Runtime dynamic int8 of `float_path`: every MatMul's weight int8 per output channel,
    its input quantized per call; every Conv's weight but the first's int8 weight-only
    (`weight_only_convolutions`)."""
    with quiet_quantizer():
        ortq.quantize_dynamic(
            str(float_path),
            str(int8_path),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=ortq.QuantType.QInt8,
        )
    model = onnx.load(str(int8_path))
    weight_only_convolutions(model, skip=first_convolution(float_path))
    onnx.checker.check_model(model)
    onnx.save(model, str(int8_path))
    return Path(int8_path)


def weight_only_convolutions(model: onnx.ModelProto, skip: Iterable[str] = ()) -> None:
    """Store each Conv's weight (but `skip`'s) as int8, symmetric per output channel, behind a
    DequantizeLinear, in place: the file shrinks and the convolution still runs in float.
    ONNX Runtime's dynamic int8 Conv (ConvInteger) made the student slower than its float graph
    (bench/README.md); the same choice as torch's dynamic mode (`quantize.Int8WeightOnlyConv1d`)."""
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    skip, dequantize = set(skip), []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name in skip or node.input[1] not in weights:
            continue
        name = node.input[1]
        weight = numpy_helper.to_array(weights[name]).astype(np.float32)  # (out, in/groups, k)
        scale = np.abs(weight).reshape(len(weight), -1).max(axis=1).clip(min=1e-12) / 127
        scale = scale.astype(np.float32)
        int8 = np.round(weight / scale.reshape(-1, 1, 1)).clip(-127, 127).astype(np.int8)
        model.graph.initializer.remove(weights[name])
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(int8, f"{name}_int8"),
                numpy_helper.from_array(scale, f"{name}_scale"),
                numpy_helper.from_array(np.zeros(len(weight), np.int8), f"{name}_zero_point"),
            ]
        )
        inputs = [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"]
        dequantize.append(
            onnx.helper.make_node(
                "DequantizeLinear", inputs, [name], name=f"{name}_dequantize", axis=0
            )
        )
    for node in reversed(dequantize):  # reading initializers only: first in topological order
        model.graph.node.insert(0, node)


# What ONNX Runtime's quantizers log on the root logger at each call (quantize_static twice).
PREPROCESSING_ADVICE = ("Please consider to run pre-processing", "Please consider pre-processing")


class DropPreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(PREPROCESSING_ADVICE)


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizers advise pre-processing (`quant_pre_process`) on the root logger
    each call; with it the static student was no faster and its logits the same
    (bench/README.md), so casebook skips it and drops that advice, by its text: every other
    record (a calibration warning) still reaches the user."""
    root, advice = logging.getLogger(), DropPreprocessingAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


class UtteranceReader(ortq.CalibrationDataReader):
    """Calibration inputs for `quantize_static`: each utterance of `batches` (dicts with
    `input_values` (batch, samples) and `attention_mask`, as `SpeechDataModule` yields them, or
    bare tensors) cut to its own length, one per call, as the model will be run."""

    def __init__(self, batches: Iterable[dict | Tensor]) -> None:
        self.utterances = list(self._unpadded(batches))
        if not self.utterances:
            raise ValueError("static int8 needs at least one calibration utterance")
        self.rewind()

    @staticmethod
    def _unpadded(batches: Iterable[dict | Tensor]) -> Iterator[np.ndarray]:
        for batch in batches:
            if isinstance(batch, Tensor):
                batch = {"input_values": batch}
            values, mask = batch["input_values"], batch.get("attention_mask")
            for row in range(values.shape[0]):
                length = int(mask[row].sum()) if mask is not None else values.shape[1]
                yield values[row : row + 1, :length].float().cpu().numpy()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return {"input_values": x} if (x := next(self.iterator, None)) is not None else None

    def rewind(self) -> None:
        self.iterator = iter(self.utterances)


def quantize_onnx_static(
    float_path: str | Path, int8_path: str | Path, calibration_batches: Iterable[dict | Tensor]
) -> Path:
    """ONNX Runtime static int8 (QDQ) of `float_path`: MatMul and Conv weights int8 per channel,
    their inputs uint8 with ranges observed (min/max) on `calibration_batches`; the first
    convolution stays float."""
    with quiet_quantizer():
        ortq.quantize_static(
            str(float_path),
            str(int8_path),
            UtteranceReader(calibration_batches),
            quant_format=ortq.QuantFormat.QDQ,
            op_types_to_quantize=STATIC_OPS,
            nodes_to_exclude=first_convolution(float_path),
            per_channel=True,
            activation_type=ortq.QuantType.QUInt8,
            weight_type=ortq.QuantType.QInt8,
            calibrate_method=ortq.CalibrationMethod.MinMax,
            calibration_providers=["CPUExecutionProvider"],
        )
    return Path(int8_path)


# ---------------------------------------------------------------------------- inference


class OnnxWav2Vec2ForCTC:
    """An ONNX Runtime session that answers like `Wav2Vec2ForCTC`: `model(input_values,
    attention_mask=None).logits`, a float tensor (batch, frames, vocabulary), so the same greedy
    and beam-search decoding and the same benchmark loop read it.

    Threads: ONNX Runtime fixes them per session, so one session is kept per thread count and the
    call uses `threads`, or `torch.get_num_threads()` when it is None: `torch.set_num_threads(n)`
    then sets both backends alike. A padded batch (an `attention_mask` with zeros) is run one
    utterance at a time, each cut to its length, its logits padded with zeros."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(
                f"{self.path}: no such ONNX model; write one with "
                "`python -m lightning_modules.speech.onnx_export <save_pretrained folder>`"
            )
        self.threads = threads
        self.sessions: dict[int, ort.InferenceSession] = {}
        self.session(1)  # a corrupt file fails here, not at the first utterance

    def session(self, threads: int) -> ort.InferenceSession:
        if threads not in self.sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Worker threads sleep between calls instead of spinning: a spinning pool keeps a core
            # busy after each utterance and slows whatever runs next on it (torch, another session).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                self.sessions[threads] = ort.InferenceSession(
                    str(self.path), options, providers=["CPUExecutionProvider"]
                )
            except ONNXRUNTIME_ERRORS as error:
                raise DataError(
                    f"{self.path}: not a loadable ONNX model ({first_line(error)}); export it again"
                    " with `python -m lightning_modules.speech.onnx_export <save_pretrained folder>`"
                ) from None
        return self.sessions[threads]

    def __call__(
        self, input_values: Tensor, attention_mask: Tensor | None = None
    ) -> CausalLMOutput:
        session = self.session(self.threads or torch.get_num_threads())
        values = input_values.detach().float().cpu()
        if attention_mask is None or bool(attention_mask.all()):
            (logits,) = session.run(["logits"], {"input_values": values.numpy()})
            # on the input's device, as Wav2Vec2ForCTC answers: decoding code reads either
            return CausalLMOutput(logits=torch.from_numpy(logits).to(input_values.device))
        rows = []
        for row, mask in zip(values, attention_mask.cpu()):
            utterance = row[: int(mask.sum())][None].numpy()
            rows.append(torch.from_numpy(session.run(["logits"], {"input_values": utterance})[0]))
        logits = torch.zeros(len(rows), max(r.shape[1] for r in rows), rows[0].shape[2])
        for i, row in enumerate(rows):
            logits[i, : row.shape[1]] = row[0]
        return CausalLMOutput(logits=logits.to(input_values.device))

    def weight_count(self) -> int:
        """Elements of the graph's weights and biases (int8 or float), without the int8 scales
        and zero points."""
        graph = onnx.load(str(self.path)).graph
        return sum(
            int(np.prod(tensor.dims))
            for tensor in graph.initializer
            if not tensor.name.endswith(("_scale", "_zero_point"))
        )


# ---------------------------------------------------------------------------- command line


def export_folder(
    folder: str | Path,
    out_dir: str | Path | None = None,
    int8: Iterable[str] = (),
    calibration: Iterable[dict | Tensor] | None = None,
) -> dict[str, Path]:
    """Write `model.onnx` (and the `int8` modes' files) and the processor of a `save_pretrained`
    folder into `out_dir` (default: the folder's sibling `<name>_onnx`). Returns the files by
    mode ("float", "dynamic", "static")."""
    folder = Path(folder)
    out_dir = Path(out_dir) if out_dir else folder.with_name(f"{folder.name}_onnx")
    model = load_float(folder)
    written = {"float": export_onnx(model, out_dir / FLOAT_FILE)}
    if (folder / "preprocessor_config.json").exists() or (folder / "vocab.json").exists():
        Wav2Vec2Processor.from_pretrained(str(folder)).save_pretrained(str(out_dir))
    for mode in int8:
        path = out_dir / INT8_FILES[mode]
        if mode == "dynamic":
            written[mode] = quantize_onnx_dynamic(written["float"], path)
        elif calibration is None:
            raise ValueError("static int8 needs calibration batches")
        else:
            written[mode] = quantize_onnx_static(written["float"], path, calibration)
    return written


def transcribe(path: str | Path, wavs: list[str | Path]) -> list[str]:
    """Greedy CTC transcripts of wav files with an ONNX model and the processor beside it."""
    model = OnnxWav2Vec2ForCTC(path)
    folder = Path(path).parent
    try:
        processor = Wav2Vec2Processor.from_pretrained(str(folder))
    except OSError:
        raise DataError(
            f"{folder}: no processor (preprocessor_config.json, vocab.json) beside {Path(path).name}"
            " to turn logits into text; export the model with `python -m"
            " lightning_modules.speech.onnx_export <save_pretrained folder>`, which copies it"
        ) from None
    return quantize.greedy_transcribe(model, processor, wavs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", help="a save_pretrained Wav2Vec2ForCTC folder (with --transcribe: an .onnx file)"
    )
    parser.add_argument(
        "rest", nargs="*", help="the output folder (default <folder>_onnx); with --transcribe: wavs"
    )
    parser.add_argument("--int8", nargs="*", choices=list(INT8_FILES), default=[])
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--data-config", default="configs/speech_student.yaml")
    parser.add_argument("--transcribe", action="store_true", help="print greedy transcripts")
    args = parser.parse_args(argv)
    try:
        if args.transcribe:
            for wav, text in zip(args.rest, transcribe(args.folder, args.rest)):
                print(f"{wav}\t{text}")
            return 0
        if len(args.rest) > 1:
            parser.error("one output folder at most")
        if args.calibration_batches < 1:
            parser.error("--calibration-batches must be at least 1")
        calibration = None
        if "static" in args.int8:
            load_float(args.folder)  # a wrong folder stops before the training audio loads
            calibration = quantize.calibration_batches(args.data_config, args.calibration_batches)
        out_dir = args.rest[0] if args.rest else None
        written = export_folder(args.folder, out_dir, args.int8, calibration)
    except DataError as error:
        print(f"onnx_export: error: {error}", file=sys.stderr)
        return 2
    for mode, path in written.items():
        print(f"{mode}\t{path}\t{os.path.getsize(path) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
