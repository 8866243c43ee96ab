"""CTC prefix beam search, with or without a word n-gram language model: pyctcdecode's decoder
over KenLM, the pair `transformers.Wav2Vec2ProcessorWithLM` loads, so the folder a fit exports
decodes with its LM in `transformers.pipeline("automatic-speech-recognition", model=DIR)`.

    decoder = beam_decoder(processor.tokenizer, "runs/speech_teacher/lm/train-3gram.arpa")
    beam_transcripts(decoder, logits, valid_frames, beam_width=32)

The language model is the training transcripts' (`datamodules.speech.language_model`), never a
validation or test sentence. `alpha` weighs the LM's log10 probability against the acoustic log
probability (shallow fusion), `beta` is a bonus per word that offsets the LM's preference for
short transcripts (pyctcdecode's defaults: 0.5 and 1.0).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from torch import Tensor, nn
from torchmetrics.text import CharErrorRate, WordErrorRate
from transformers import PreTrainedTokenizerBase, Wav2Vec2Processor

from casebook.common.errors import DataError
from datamodules.speech.language_model import build_arpa, check_arpa

DEFAULT_ALPHA, DEFAULT_BETA = 0.5, 1.0


def require(module: str, what: str) -> None:
    """One line naming the missing package and the command that installs it."""
    if importlib.util.find_spec(module) is None:
        raise DataError(
            f"{what} needs the '{module}' package, which is not installed: run `make setup` "
            "(or pip install pyctcdecode pygtrie kenlm)"
        )


def ctc_labels(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The tokenizer's vocabulary in id order, as pyctcdecode reads it (it turns <pad>, the CTC
    blank, into "" and the word delimiter | into a space)."""
    vocab = tokenizer.get_vocab()
    return sorted(vocab, key=vocab.get)


def beam_decoder(
    tokenizer: PreTrainedTokenizerBase,
    arpa: str | Path | None = None,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
):
    """A pyctcdecode `BeamSearchDecoderCTC` over the tokenizer's labels, with the ARPA language
    model `arpa` (checked first: a missing or corrupt file is one DataError line) or none."""
    require("pyctcdecode", "CTC beam search")
    if arpa is not None:
        require("kenlm", "a language model in the beam search")
        check_arpa(arpa)
    from pyctcdecode import build_ctcdecoder

    return build_ctcdecoder(
        ctc_labels(tokenizer),
        kenlm_model_path=None if arpa is None else str(arpa),
        alpha=alpha,
        beta=beta,
    )


def beam_transcripts(decoder, logits: Tensor, valid_frames: Tensor, beam_width: int) -> list[str]:
    """Beam-search transcripts of a batch. logits: (batch, frames, vocab); padded frames (False
    in `valid_frames`) are cut off before decoding."""
    log_probs = logits.detach().float().log_softmax(-1).cpu().numpy()
    lengths = valid_frames.sum(-1).tolist()
    return [
        decoder.decode(utterance[:length], beam_width=beam_width)
        for utterance, length in zip(log_probs, lengths, strict=True)
    ]


def save_processor_with_lm(processor: Wav2Vec2Processor, decoder, directory: str | Path) -> Path:
    """Save `processor` with the LM decoder as a `Wav2Vec2ProcessorWithLM` into `directory`
    (its `language_model/` folder holds the ARPA file and alpha/beta), which
    `transformers.pipeline` then decodes with."""
    from transformers import Wav2Vec2ProcessorWithLM

    # a re-export replaces the previous one, as save_pretrained does with the model
    shutil.rmtree(Path(directory) / "language_model", ignore_errors=True)
    with_lm = Wav2Vec2ProcessorWithLM(
        feature_extractor=processor.feature_extractor,
        tokenizer=processor.tokenizer,
        decoder=decoder,
    )
    with_lm.save_pretrained(str(directory))
    # transformers' pipeline looks for "processor_class" inside the feature extractor's settings,
    # which save_pretrained nests in processor_config.json without it: without this line the
    # pipeline would silently decode greedily
    config_file = Path(directory) / "processor_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        if isinstance(config.get("feature_extractor"), dict):
            config["feature_extractor"]["processor_class"] = type(with_lm).__name__
            config_file.write_text(json.dumps(config, indent=2) + "\n")
    return Path(directory)


@dataclass(frozen=True)
class BeamSearchConfig:
    """How `casebook test` decodes besides greedily (`--model.beam_search.*`); validation stays
    greedy, which is fast. Also the language model saved with a fit's export.

    Args:
        beam_width: prefixes kept per frame; 0: greedy decoding only.
        language_model: `train`: a word n-gram model of the training transcripts, built by
            casebook into `<default_root_dir>/lm/`; a path: that ARPA file; null: beam search
            without a language model.
        order: n-gram order of the `train` model.
        alpha: language model weight in the beam's score.
        beta: score bonus per word.
    """

    beam_width: int = 32
    language_model: str | None = "train"
    order: int = 3
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA


def language_model_path(module: L.LightningModule, config: BeamSearchConfig) -> Path | None:
    """The ARPA file `config` asks for: the `train` model is built (again, cheap) from the attached
    datamodule's training transcripts, so it never holds a validation or test sentence."""
    if config.language_model is None:
        return None
    if config.language_model != "train":
        return Path(config.language_model)
    datamodule = getattr(module.trainer, "datamodule", None)
    if not hasattr(datamodule, "transcripts"):
        raise DataError(
            "beam_search.language_model 'train' needs a datamodule with training transcripts; "
            "give an ARPA file's path or null instead"
        )
    root = Path(module.trainer.default_root_dir) / "lm"
    return build_arpa(
        datamodule.transcripts("train"), root / f"train-{config.order}gram.arpa", config.order
    )


class BeamSearchEvaluation(nn.Module):
    """Test-time WER of beam search without (`wer_beam`) and with the language model (`wer_lm`,
    `cer_lm`) for each decoded model (`who`: "" for the module's own, "teacher_" ...)."""

    def __init__(self, config: BeamSearchConfig, models: tuple[str, ...] = ("",)) -> None:
        super().__init__()
        if config.beam_width > 0 and config.language_model not in (None, "train"):
            check_arpa(config.language_model)  # a bad path fails before any training or logger
        self.config = config
        self.metrics = nn.ModuleDict()
        for who in models:
            self.metrics[f"{who}wer_beam"] = WordErrorRate()
            self.metrics[f"{who}wer_lm"] = WordErrorRate()
            self.metrics[f"{who}cer_lm"] = CharErrorRate()
        self.decoders: dict[str, object] = {}

    @property
    def enabled(self) -> bool:
        return self.config.beam_width > 0

    def start(self, module: L.LightningModule, tokenizer: PreTrainedTokenizerBase) -> None:
        """Build the decoders (and the `train` language model) before the test epoch."""
        if not self.enabled:
            return
        self.decoders = {"beam": beam_decoder(tokenizer)}
        if (arpa := language_model_path(module, self.config)) is not None:
            config = self.config
            self.decoders["lm"] = beam_decoder(tokenizer, arpa, config.alpha, config.beta)

    def update(
        self,
        module: L.LightningModule,
        who: str,
        logits: Tensor,
        valid: Tensor,
        references: list[str],
    ) -> None:
        if not self.enabled:
            return
        size = len(references)
        for kind, decoder in self.decoders.items():
            texts = beam_transcripts(decoder, logits, valid, self.config.beam_width)
            names = [f"{who}wer_beam"] if kind == "beam" else [f"{who}wer_lm", f"{who}cer_lm"]
            for name in names:
                self.metrics[name].update(texts, references)
                module.log(f"test/{name}", self.metrics[name], batch_size=size)
