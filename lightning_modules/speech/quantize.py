"""Int8 students: post-training dynamic and static quantization, quantization-aware training
(QAT), and a saved form that reloads.

    python -m lightning_modules.speech.quantize dynamic runs/speech_student/student_hf runs/speech_student/student_int8_dynamic
    python -m lightning_modules.speech.quantize static  runs/speech_student/student_hf runs/speech_student/student_int8_static [--calibration-batches 8]
    python -m lightning_modules.speech.quantize transcribe runs/speech_student/student_int8_dynamic a.wav b.wav
    casebook fit --config configs/speech_student_qat.yaml   # QAT -> runs/speech_student_qat/student_int8_qat

`dynamic` and `static` read a float `save_pretrained` folder (what the distiller exports), write
the int8 student and print the dtype of every layer that has weights. `static` calibrates on
training batches of the data settings of `--data-config` (default configs/speech_student.yaml).
`transcribe` prints greedy CTC transcripts of wav files with a float or an int8 folder.

What is quantized (`quantized_layer_names`): every `nn.Linear` (attention q/k/v/out and the two
feed-forward layers of each transformer layer, the feature projection, the CTC head) and the
convolutions: the feature encoder's and the positional one (its weight norm folded into a plain
weight first). Weights become int8 per output channel; their scales and zero points stay float
(float64 scales and int64 zero points for torch.ao's modules, float32 scales for the symmetric
weight-only ones). LayerNorm, GELU, attention's softmax and matmuls and the residual adds stay
float.
- dynamic (no calibration): `torch.ao.quantization.quantize_dynamic` for the Linear layers, each
  Linear's input quantized per call; every convolution weight-only (`Int8WeightOnlyConv1d`: int8
  weight dequantized per call, float input and output). torch.ao's dynamic Conv1d (it warns of
  "poor numerical accuracy") was 46% off (relative norm) on a single convolution here; the
  weight-only convolutions moved a trained student's logits by 0.5%, the int8 Linears by 2.2%.
  Without them the convolutions stayed float and the student was only 2.3x smaller.
- static: the Linear layers and the convolutions after the first (the first reads the waveform:
  `quantized_layer_names`) are each wrapped in quant -> layer -> dequant (`QuantizedRegion`: eager
  mode needs explicit stubs where float tensors enter and leave int8), observed on calibration
  batches (fbgemm qconfig: histogram observer, per-channel weights), then converted.
- qat: the same wrapping with fake quantization (`prepare_qat`), fine-tuned by the distiller
  (`Wav2Vec2Distiller(quantization_aware=True)`), then `convert_qat`.

Backend: torch.ao's eager quantization on the fbgemm engine, chosen by measurement (torchao's int8
and torch.compile were slower than float on an AVX2 CPU without VNNI); the measurements and where
the time goes are in bench/README.md ("Why torch.ao eager"). The other int8 backend is ONNX
Runtime (`onnx_export.py`: the student exported to ONNX, int8 dynamic and static): on the AMD EPYC
with AVX-512 VNNI its static int8 was the fastest (bench/README.md, `speech`).

Saved form (`save_quantized`, `load_quantized`): the float config and the processor
(`save_pretrained`), the int8 state dict (`quantized_state_dict.pt`, loads with
`weights_only=True`) and `quantization.json` (mode, engine, quantized layer names). Loading
builds the float model from the config, applies the same quantization structure without
calibration, then loads the state dict.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.ao.nn.qat as nnqat
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
import torch.ao.quantization as tq
from torch import Tensor, nn
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Processor

from casebook.common.errors import DataError

QuantMode = Literal["dynamic", "static", "qat"]
STATE_FILE = "quantized_state_dict.pt"
META_FILE = "quantization.json"
# fbgemm, not torch's "x86" engine: on a CPU with AVX-512 VNNI (AMD EPYC here, the AMX Xeons) "x86"
# sends int8 convolutions to oneDNN, which builds a kernel for every new input length, and every
# utterance has a new length; fbgemm has no per-shape cost (the timings: bench/README.md, "Why
# static int8 was slower than float"). qnnpack where fbgemm is missing (ARM).
ENGINE = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else "qnnpack"
POSITIONAL_CONV = "wav2vec2.encoder.pos_conv_embed.conv"
FIRST_CONV = "wav2vec2.feature_extractor.conv_layers.0.conv"

# eager mode swaps modules by exact type: Conv1d needs adding to the QAT and convert mappings
QAT_MAPPING = {**tq.get_default_qat_module_mappings(), nn.Conv1d: nnqat.Conv1d}
STATIC_MAPPING = {**tq.get_default_static_quant_module_mappings(), nnqat.Conv1d: nnq.Conv1d}


@contextlib.contextmanager
def eager_quantization() -> Iterator[None]:
    """torch.ao eager quantization on `ENGINE`, its deprecation warnings silenced.

    torch.ao.quantization warns on every call that it is deprecated in favour of torchao; torchao's
    int8 path ran ~20x slower than float on an AVX2 CPU (bench/README.md), so casebook keeps
    torch.ao and silences these warnings here, the one place that calls it."""
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", r"(?s).*quantized tensor creation functions.*deprecated")
        warnings.filterwarnings("ignore", r"(?s).*reduce_range will be deprecated")
        warnings.filterwarnings("ignore", r".*must run observer before calling calculate_qparams")
        warnings.filterwarnings("ignore", r"TypedStorage is deprecated")  # loading int8 tensors
        torch.backends.quantized.engine = ENGINE
        try:
            yield
        finally:
            torch.backends.quantized.engine = previous


# ---------------------------------------------------------------------------- which layers


def quantized_layer_names(
    model: Wav2Vec2ForCTC, convolutions: bool = True, first_convolution: bool = False
) -> list[str]:
    """Every `nn.Linear` and, with `convolutions`, every `nn.Conv1d` but the first (unless
    `first_convolution`).

    Static and QAT leave the first convolution float. It reads the waveform, and a LayerNorm
    over channels follows it in every frame, which scales the quantization noise of quiet frames
    up to the level of speech: with int8 activations it alone moved a trained student's logits by
    13% (relative norm) and changed 7% of the frames' argmax. It holds 5% of a 2.15 M-parameter
    student's weights. Weight-only int8 (dynamic mode) moved them by 0.4%."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        or (
            convolutions
            and isinstance(module, nn.Conv1d)
            and (first_convolution or name != FIRST_CONV)
        )
    ]


def fold_positional_weight_norm(model: Wav2Vec2ForCTC) -> Wav2Vec2ForCTC:
    """Replace the positional convolution's weight norm (weight = g * v / |v|, a training
    reparametrization) by a plain `nn.Conv1d` holding the weight it computes, in place: eager
    quantization swaps modules by exact type, which the parametrized class is not. A new module,
    not `remove_parametrizations`, which edits the class a deep copy shares with its original."""
    conv = model.get_submodule(POSITIONAL_CONV)
    if type(conv) is nn.Conv1d or not hasattr(conv, "parametrizations"):
        return model
    plain = nn.Conv1d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
    ).to(conv.weight.device)
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    _set_submodule(model, POSITIONAL_CONV, plain)
    return model


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attribute, module)


class QuantizedRegion(nn.Module):
    """quant -> layer -> dequant: eager static quantization converts only what sits between a
    QuantStub and a DeQuantStub, so each quantized layer is its own int8 region and everything
    around it (LayerNorm, GELU, softmax, residual adds) keeps reading and writing float."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.layer = layer
        self.dequant = tq.DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        return self.dequant(self.layer(self.quant(x)))


class Int8WeightOnlyConv1d(nn.Module):
    """A `nn.Conv1d` whose weight is kept int8 (symmetric, per output channel, float32 scales)
    and dequantized on every call; its input, bias and output stay float. Dynamic mode uses it
    for the convolutions: no calibration, and no quantized activations, which made torch.ao's
    dynamic Conv1d 46% off (relative norm) on one convolution here."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"padding {conv.padding!r}/{conv.padding_mode!r} is not supported")
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        with torch.no_grad():
            weight = conv.weight.detach().float()
            scale = weight.abs().amax(dim=(1, 2)).clamp(min=1e-12) / 127
            int8 = torch.round(weight / scale[:, None, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", int8)
        self.register_buffer("weight_scale", scale)
        bias = None if conv.bias is None else conv.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def dequantized_weight(self) -> Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv1d(
            x,
            self.dequantized_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        out, per_group, kernel = self.weight_int8.shape
        return f"{per_group * self.groups}, {out}, kernel_size={kernel}, stride={self.stride}, int8"


def _float_copy(model: Wav2Vec2ForCTC) -> Wav2Vec2ForCTC:
    return fold_positional_weight_norm(copy.deepcopy(model))


def _wrap_regions(model: Wav2Vec2ForCTC, names: list[str], qconfig: tq.QConfig) -> None:
    for name in names:
        region = QuantizedRegion(model.get_submodule(name))
        region.qconfig = qconfig
        _set_submodule(model, name, region)


def _dynamic_structure(model: Wav2Vec2ForCTC, names: list[str]) -> Wav2Vec2ForCTC:
    """`names`' Linear layers to torch.ao dynamic int8, their convolutions to int8 weight-only."""
    linears = [n for n in names if isinstance(model.get_submodule(n), nn.Linear)]
    for name in names:
        if isinstance(module := model.get_submodule(name), nn.Conv1d):
            _set_submodule(model, name, Int8WeightOnlyConv1d(module))
    with eager_quantization():
        spec = dict.fromkeys(linears, tq.per_channel_dynamic_qconfig)
        return tq.quantize_dynamic(model.eval(), spec, inplace=True)


def _static_prepared(model: Wav2Vec2ForCTC, names: list[str]) -> Wav2Vec2ForCTC:
    _wrap_regions(model, names, tq.get_default_qconfig(ENGINE))
    with eager_quantization():
        return tq.prepare(model.eval(), inplace=True)


def _convert(model: Wav2Vec2ForCTC) -> Wav2Vec2ForCTC:
    with eager_quantization():
        return tq.convert(model.cpu().eval(), mapping=STATIC_MAPPING, inplace=True)


# ---------------------------------------------------------------------------- the three modes


def quantize_dynamic(model: Wav2Vec2ForCTC) -> Wav2Vec2ForCTC:
    """An int8 copy without calibration: Linear weights quantized now (per channel), their inputs
    per call (per tensor); every convolution's weight int8 (per channel), dequantized per call
    (`Int8WeightOnlyConv1d`). torch.ao's own dynamic Conv1d (which warns of "poor numerical
    accuracy") was 46% off (relative norm) on a single convolution here; weight-only int8 moved a
    trained student's logits by 0.5% with all its convolutions."""
    model = _float_copy(model).cpu()
    return _dynamic_structure(model, quantized_layer_names(model, first_convolution=True))


@torch.no_grad()
def quantize_static(
    model: Wav2Vec2ForCTC, calibration_batches: Iterable[dict | Tensor]
) -> Wav2Vec2ForCTC:
    """An int8 copy whose activation scales were observed on `calibration_batches`: dicts with
    `input_values` (batch, samples) and optionally `attention_mask`, as `SpeechDataModule`
    yields them, or bare `input_values` tensors."""
    model = _float_copy(model).cpu()
    model = _static_prepared(model, quantized_layer_names(model))
    seen = 0
    for batch in calibration_batches:
        if isinstance(batch, Tensor):
            batch = {"input_values": batch}
        model(batch["input_values"].cpu(), attention_mask=_cpu(batch.get("attention_mask")))
        seen += 1
    if not seen:
        raise ValueError("quantize_static needs at least one calibration batch")
    return _convert(model)


def _cpu(tensor: Tensor | None) -> Tensor | None:
    return tensor.cpu() if tensor is not None else None


def prepare_qat(model: Wav2Vec2ForCTC) -> Wav2Vec2ForCTC:
    """A copy with fake quantization on the layers static mode quantizes, in train mode, to
    fine-tune (on the model's device); `convert_qat` turns it into int8."""
    model = _float_copy(model)
    _wrap_regions(model, quantized_layer_names(model), tq.get_default_qat_qconfig(ENGINE))
    with eager_quantization():
        return tq.prepare_qat(model.train(), mapping=QAT_MAPPING, inplace=True)


def observe_ranges(model: nn.Module, enabled: bool) -> None:
    """Let a `prepare_qat` model's fake quantizers update their activation ranges (training
    batches) or hold them (evaluation), in place."""
    model.apply(tq.enable_observer if enabled else tq.disable_observer)


def convert_qat(model: Wav2Vec2ForCTC) -> Wav2Vec2ForCTC:
    """The int8 model (on the CPU) of a `prepare_qat` model; the argument is left as it is."""
    return _convert(copy.deepcopy(model))


def float_weights(model: Wav2Vec2ForCTC) -> Wav2Vec2ForCTC:
    """A plain float `Wav2Vec2ForCTC` (weight norm restored) with the weights of a float or
    `prepare_qat` model: what `save_pretrained` and `transformers.pipeline` read."""
    state = {}
    for key, value in model.state_dict().items():
        if "fake_quant" in key or "activation_post_process" in key:
            continue
        state[re.sub(r"\.layer\.(weight|bias)$", r".\1", key)] = value
    plain = Wav2Vec2ForCTC(model.config).to(next(model.parameters()).device)
    folded = f"{POSITIONAL_CONV}.weight"
    missing, unexpected = plain.load_state_dict(state, strict=False)
    weight_norm = {k for k in missing if k.startswith(f"{POSITIONAL_CONV}.parametrizations.")}
    if set(missing) - weight_norm or set(unexpected) - {folded}:
        raise RuntimeError(f"not a wav2vec2 student: missing {missing}, unexpected {unexpected}")
    if folded in state:  # weight norm's right inverse sets g = |w| and v = w
        with torch.no_grad():
            plain.get_submodule(POSITIONAL_CONV).weight = state[folded]
    return plain.train(model.training)


# ---------------------------------------------------------------------------- inspection


class LayerDtype(NamedTuple):
    name: str
    kind: str  # the module's class
    weight_dtype: str
    qparams_dtype: str  # "scales/zero points" of the weight, "-" for float layers


def _weight_of(module: nn.Module) -> Tensor | None:
    if isinstance(module, Int8WeightOnlyConv1d):
        return module.weight_int8
    if isinstance(module, (nnq.Linear, nnqd.Linear, nnq.Conv1d)):
        return module.weight()  # quantized modules keep the weight packed
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, Tensor) else None


def layer_dtypes(model: nn.Module) -> list[LayerDtype]:
    """Each layer that has a weight: its name, class, weight dtype and the dtypes of the weight's
    scales and zero points ("-" when it is float)."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, (tq.FakeQuantizeBase, tq.ObserverBase)):
            continue
        weight = _weight_of(module)
        if weight is None:
            continue
        if weight.is_quantized:
            if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                scale, zero = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
                qparams = f"{scale.dtype}/{zero.dtype}".replace("torch.", "")
            else:  # per tensor: a Python float and int
                qparams = "float64/int64"
        elif isinstance(module, Int8WeightOnlyConv1d):  # symmetric: no zero points
            qparams = f"{module.weight_scale.dtype}/-".replace("torch.", "")
        else:
            qparams = "-"
        rows.append(
            LayerDtype(
                name.removesuffix(".layer"),  # a QuantizedRegion's layer: the region's name
                type(module).__name__,
                str(weight.dtype).replace("torch.", ""),
                qparams,
            )
        )
    return rows


def layer_dtype_report(model: nn.Module) -> str:
    """Scales and zero points stay float, weights go int8: one line per layer with weights."""
    rows = layer_dtypes(model)
    width = max(len(row.name) for row in rows)
    lines = [f"{'layer':<{width}}  {'class':<24} {'weight':<8} scales/zero points"]
    lines += [
        f"{r.name:<{width}}  {r.kind:<24} {r.weight_dtype:<8} {r.qparams_dtype}" for r in rows
    ]
    return "\n".join(lines)


def quantized_layers(model: nn.Module) -> list[str]:
    """Names of the layers that run in int8 (as `quantized_layer_names` named them)."""
    int8 = (QuantizedRegion, nnqd.Linear, Int8WeightOnlyConv1d)
    return [name for name, module in model.named_modules() if isinstance(module, int8)]


# ---------------------------------------------------------------------------- save and load


def save_quantized(
    model: Wav2Vec2ForCTC,
    directory: str | Path,
    mode: QuantMode,
    processor: Wav2Vec2Processor | None = None,
) -> Path:
    """Write an int8 student: config (and processor) by `save_pretrained`, the int8 state dict,
    and `quantization.json` naming the mode and the quantized layers."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(directory))
    if processor is not None:
        processor.save_pretrained(str(directory))
    torch.save(model.state_dict(), directory / STATE_FILE)
    meta = {
        "mode": mode,
        "engine": ENGINE,
        "layers": quantized_layers(model),
        "torch": torch.__version__.split("+")[0],
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_quantized(directory: str | Path) -> Wav2Vec2ForCTC:
    """The int8 student `save_quantized` wrote, in eval mode on the CPU."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except FileNotFoundError as error:
        raise ValueError(
            f"{directory} holds no {META_FILE}: not a save_quantized folder"
        ) from error
    model = fold_positional_weight_norm(Wav2Vec2ForCTC(Wav2Vec2Config.from_pretrained(directory)))
    layers = meta["layers"]
    if meta["mode"] == "dynamic":
        model = _dynamic_structure(model, layers)
    elif meta["mode"] in ("static", "qat"):
        model = _convert(_static_prepared(model, layers))
    else:
        raise ValueError(f"{directory / META_FILE}: unknown mode {meta['mode']!r}")
    with eager_quantization():  # packed weights are re-packed for the engine on load
        state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


def load_student(directory: str | Path) -> Wav2Vec2ForCTC:
    """A float `save_pretrained` folder or an int8 `save_quantized` one, in eval mode."""
    if (Path(directory) / META_FILE).exists():
        return load_quantized(directory)
    return Wav2Vec2ForCTC.from_pretrained(str(directory)).eval()


# ---------------------------------------------------------------------------- command line


def transcribe(directory: str | Path, wavs: list[str | Path]) -> list[str]:
    """Greedy CTC transcripts of wav files by a float or int8 student folder."""
    processor = Wav2Vec2Processor.from_pretrained(str(directory))
    return greedy_transcribe(load_student(directory), processor, wavs)


@torch.no_grad()
def greedy_transcribe(model, processor: Wav2Vec2Processor, wavs: list[str | Path]) -> list[str]:
    """Greedy CTC transcripts of wav files (resampled to the processor's rate) by `model`, anything
    called like `Wav2Vec2ForCTC` (`onnx_export.OnnxWav2Vec2ForCTC` too), one utterance a call."""
    from datamodules.speech.dataset import load_waveform
    from lightning_modules.speech.ctc import greedy_transcripts

    rate = processor.feature_extractor.sampling_rate
    texts = []
    for wav in wavs:
        features = processor(
            load_waveform(wav, rate).numpy(), sampling_rate=rate, return_tensors="pt"
        )
        logits = model(features.input_values).logits
        valid = torch.ones(logits.shape[:2], dtype=torch.bool)
        texts.append(greedy_transcripts(logits, valid, processor.tokenizer)[0])
    return texts


def speech_datamodule(config: str | Path, **overrides):
    """The `SpeechDataModule` of a casebook config's `data.init_args` (and `overrides`)."""
    import yaml

    from datamodules.speech import SpeechDataModule

    if not Path(config).is_file():
        raise DataError(
            f"{config}: no such config file; pass the casebook speech config whose data to read"
            " (configs/speech_student.yaml of the repository, with its path from here)"
        )
    spec = yaml.safe_load(Path(config).read_text()) or {}
    init_args = (spec.get("data") or {}).get("init_args")
    if not isinstance(init_args, dict):
        raise DataError(f"{config}: no data.init_args to build the SpeechDataModule from")
    return SpeechDataModule(**{**init_args, **overrides})


def calibration_batches(config: str | Path, count: int) -> list[dict]:
    """The first `count` training batches of the config's data (seeded shuffle)."""
    loader = speech_datamodule(config).train_dataloader()
    batches = []
    for batch in loader:
        if len(batches) == count:
            break
        batches.append(batch)
    return batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for mode in ("dynamic", "static"):
        command = commands.add_parser(mode, help=f"{mode} int8 quantization of a float folder")
        command.add_argument("float_dir", help="a save_pretrained Wav2Vec2ForCTC folder")
        command.add_argument("out_dir")
        if mode == "static":
            command.add_argument("--calibration-batches", type=int, default=8)
            command.add_argument("--data-config", default="configs/speech_student.yaml")
    command = commands.add_parser("transcribe", help="print greedy transcripts of wav files")
    command.add_argument("dir", help="a float or int8 student folder")
    command.add_argument("wavs", nargs="+")
    args = parser.parse_args(argv)

    if args.command == "transcribe":
        for wav, text in zip(args.wavs, transcribe(args.dir, args.wavs)):
            print(f"{wav}\t{text}")
        return
    model = Wav2Vec2ForCTC.from_pretrained(args.float_dir).eval()
    if args.command == "dynamic":
        quantized = quantize_dynamic(model)
    else:
        try:
            batches = calibration_batches(args.data_config, args.calibration_batches)
        except DataError as error:
            parser.exit(2, f"quantize: error: {error}\n")
        quantized = quantize_static(model, batches)
    processor = Wav2Vec2Processor.from_pretrained(args.float_dir)
    out = save_quantized(quantized, args.out_dir, args.command, processor)
    print(layer_dtype_report(quantized))
    print(f"wrote {args.command} int8 student to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
