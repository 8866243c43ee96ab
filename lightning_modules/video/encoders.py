"""Frame and step-text encoders projected into one embedding space, shared by ClipPretrainer and
StepAligner, and saved by the one so the other can load them.

- frames: a small CNN (default), torchvision's ResNet-18 (``weights=None``) with a CIFAR-style
  stem for 32×32 frames, or, for precomputed features (``feature_dim`` set), an MLP or identity;
- texts: a small BERT built from a config, or any local transformers encoder folder, mean-pooled;
- a linear projection of each into ``embed_dim``, and the learnable CLIP temperature.

``ClipEncoders.save(dir)`` writes ``encoders.json`` (the architecture), ``encoders.pt`` (weights)
and ``text_encoder/`` (a transformers folder, reusable as ``--model.encoder.text_encoder``);
``ClipEncoders.load(path)`` reads such a folder or a ClipPretrainer Lightning checkpoint.
``over_cached_frames()`` turns frame encoders into readers of their own cached frame embeddings
(``ClipPretrainer.predict_step``'s .npy files): identity frame encoder and projection.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torchvision
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, BertConfig, BertModel

from casebook.common.errors import DataError
from datamodules.hparams import load_checkpoint
from lightning_modules.common import Norm, make_norm

FrameEncoderKind = Literal["auto", "cnn", "resnet18", "mlp", "identity"]
SPEC_FILE, WEIGHTS_FILE, TEXT_DIR = "encoders.json", "encoders.pt", "text_encoder"
CHECKPOINT_KEY = "clip_encoders"  # where ClipPretrainer stores the spec in its checkpoints


@dataclass
class EncoderConfig:
    """Architecture of the frame and text encoders (ignored when loading pretrained encoders).

    Args:
        frame_encoder: cnn, resnet18 (frames) or mlp, identity (features); auto picks cnn or mlp.
        cnn_width: channels of the small CNN's first block (doubling twice after it).
        cnn_norm: normalization after each of its convolutions: batch, group, layer or none.
        feature_hidden: width of the MLP over precomputed features.
        text_encoder: local folder of a pretrained transformers encoder; None builds a small BERT.
        text_hidden: hidden size of the small BERT.
        text_layers: layers of the small BERT.
        text_heads: attention heads of the small BERT.
        max_text_length: position embeddings of the small BERT (longest step text in tokens).
        embed_dim: size of the shared frame-text embedding.
        logit_scale_init: initial CLIP logit scale, 1 / temperature (CLIP: 1 / 0.07).
        max_logit_scale: the logit scale is clamped at this value (CLIP: 100).
    """

    frame_encoder: FrameEncoderKind = "auto"
    cnn_width: int = 32
    cnn_norm: Norm = "batch"
    feature_hidden: int = 256
    text_encoder: str | None = None
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    max_text_length: int = 64
    embed_dim: int = 128
    logit_scale_init: float = 1 / 0.07
    max_logit_scale: float = 100.0


def small_cnn(width: int, norm: Norm = "batch") -> nn.Sequential:
    """Four 3×3 conv blocks (stride 1, 2, 2, 2) and global average pooling: 4·width features.
    ~4M multiply-adds per 32×32 frame at width 16, so whole videos encode quickly on a CPU."""
    channels = [3, width, 2 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for i, stride in enumerate((1, 2, 2, 2)):
        layers += [
            nn.Conv2d(channels[i], channels[i + 1], 3, stride, 1, bias=norm == "none"),
            make_norm(norm, channels[i + 1]),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def resnet18_small_stem() -> nn.Module:
    """ResNet-18 without pretrained weights; a 3×3 stride-1 stem and no max-pool, as for CIFAR,
    since the ImageNet stem would shrink a 32×32 frame to 8×8 before the first block."""
    model = torchvision.models.resnet18(weights=None)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


def build_frame_encoder(
    kind: FrameEncoderKind, config: EncoderConfig, feature_dim: int | None
) -> tuple[nn.Module, int]:
    """(encoder, output size) of frames (N, 3, H, W) or features (N, D)."""
    if kind == "auto":
        kind = "mlp" if feature_dim else "cnn"
    if feature_dim and kind in ("cnn", "resnet18"):
        raise DataError(f"frame_encoder={kind} needs frames, but the data gives features")
    if not feature_dim and kind in ("mlp", "identity"):
        raise DataError(f"frame_encoder={kind} needs features (feature_dim), the data gives frames")
    if kind == "cnn":
        return small_cnn(config.cnn_width, config.cnn_norm), 4 * config.cnn_width
    if kind == "resnet18":
        return resnet18_small_stem(), 512
    if kind == "identity":
        return nn.Identity(), feature_dim
    hidden = config.feature_hidden
    mlp = nn.Sequential(
        nn.LayerNorm(feature_dim),
        nn.Linear(feature_dim, hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
    )
    return mlp, hidden


class TextEncoder(nn.Module):
    """A transformers encoder, mean-pooled over the attention mask: (N, L) tokens -> (N, hidden)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # unused: under DDP its parameters would never get gradients
        self.out_dim = model.config.hidden_size

    @classmethod
    def build(cls, config: EncoderConfig, vocab_size: int | None, pad_token_id: int) -> TextEncoder:
        if config.text_encoder is not None:
            path = Path(config.text_encoder)
            if not path.is_dir():
                raise DataError(f"{path}: text encoder folder not found")
            model = AutoModel.from_pretrained(path, local_files_only=True)
            if vocab_size is not None and vocab_size > model.config.vocab_size:
                raise DataError(
                    f"{path}: the text encoder knows {model.config.vocab_size} tokens but the"
                    f" tokenizer has {vocab_size}; pass its own tokenizer (--data.tokenizer {path})"
                )
            return cls(model)
        if vocab_size is None:  # e.g. `casebook predict` on video files with no annotations
            raise DataError(
                "the text encoder needs the tokenizer's vocab_size, but the data has no tokenizer:"
                " give the --data.annotations (or --data.tokenizer) the encoders were trained with"
            )
        bert = BertConfig(
            vocab_size=vocab_size,
            hidden_size=config.text_hidden,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            intermediate_size=4 * config.text_hidden,
            max_position_embeddings=config.max_text_length,
            pad_token_id=pad_token_id,
        )
        return cls(BertModel(bert, add_pooling_layer=False))

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> TextEncoder:
        """The architecture of a saved encoder (its weights are loaded afterwards)."""
        return cls(AutoModel.from_config(AutoConfig.for_model(**config)))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class ClipEncoders(nn.Module):
    """Frame and text encoders with projections into ``embed_dim`` and the CLIP logit scale.

    Built from a JSON-able ``spec`` (frame encoder kind, sizes, the text model's config) so a
    saved copy rebuilds without the data or the original text-encoder folder.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        config = EncoderConfig(**spec["config"])
        self.frame_encoder, frame_dim = build_frame_encoder(
            spec["frame_encoder"], config, spec["feature_dim"]
        )
        self.text_encoder = TextEncoder.from_config_dict(spec["text_config"])
        # False over cached frame embeddings (see `over_cached_frames`): they are projected already.
        if spec.get("frame_projection", True):
            self.frame_projection = nn.Linear(frame_dim, config.embed_dim)
        else:
            self.frame_projection = nn.Identity()
        self.text_projection = nn.Linear(self.text_encoder.out_dim, config.embed_dim)
        # CLIP (Radford et al. 2021): a learnable log temperature, initialized to log(1 / 0.07).
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        self.max_logit_scale = config.max_logit_scale
        self.embed_dim = config.embed_dim

    @classmethod
    def build(
        cls,
        config: EncoderConfig,
        vocab_size: int | None = None,
        pad_token_id: int = 0,
        feature_dim: int | None = None,
    ) -> ClipEncoders:
        """Fresh encoders (the text encoder's pretrained weights, when given, are kept)."""
        text = TextEncoder.build(config, vocab_size, pad_token_id)
        kind = config.frame_encoder
        if kind == "auto":
            kind = "mlp" if feature_dim else "cnn"
        spec = {
            "config": asdict(config),
            "frame_encoder": kind,
            "feature_dim": feature_dim,
            "text_config": text.model.config.to_dict(),
        }
        encoders = cls(spec)
        encoders.text_encoder.load_state_dict(text.state_dict())
        return encoders

    def over_cached_frames(self) -> ClipEncoders:
        """These encoders over their own cached frame embeddings, (N, embed_dim) features
        written by `casebook predict` with `ClipPretrainer.predict_step`: the frame encoder and
        its projection become identities (their work is in the cache); the text side is kept.
        In place; returns self."""
        self.frame_encoder, self.frame_projection = nn.Identity(), nn.Identity()
        self.spec = {
            **self.spec,
            "frame_encoder": "identity",
            "feature_dim": self.embed_dim,
            "frame_projection": False,
        }
        return self

    @property
    def logit_scale(self) -> Tensor:
        return self.log_logit_scale.exp().clamp(max=self.max_logit_scale)

    def encode_frames(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) frames or (N, D) features -> (N, embed_dim), not normalized."""
        return self.frame_projection(self.frame_encoder(frames))

    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(N, L) tokens -> (N, embed_dim), not normalized."""
        return self.text_projection(self.text_encoder(input_ids, attention_mask))

    def encode_videos(self, frames: Tensor, frame_mask: Tensor) -> Tensor:
        """(B, T, ...) padded videos -> (B, T, embed_dim); only real frames are encoded."""
        out = frames.new_zeros(*frame_mask.shape, self.embed_dim)
        out[frame_mask] = self.encode_frames(frames[frame_mask]).to(out.dtype)
        return out

    def encode_steps(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, S, L) step tokens -> (B, S, embed_dim)."""
        batch, steps, length = input_ids.shape
        flat = self.encode_texts(input_ids.reshape(-1, length), attention_mask.reshape(-1, length))
        return flat.reshape(batch, steps, -1)

    def save(self, directory: str | Path) -> Path:
        """Write encoders.json, encoders.pt and text_encoder/ (a transformers folder)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SPEC_FILE).write_text(json.dumps(self.spec, indent=2) + "\n")
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        self.text_encoder.model.save_pretrained(directory / TEXT_DIR)
        return directory

    @classmethod
    def load(cls, path: str | Path) -> ClipEncoders:
        """From a folder written by `save` or from a ClipPretrainer checkpoint (.ckpt)."""
        path = Path(path)
        if path.is_dir():
            if not (path / SPEC_FILE).is_file():
                raise DataError(f"{path}: no {SPEC_FILE}; not a folder written by ClipPretrainer")
            encoders = cls(json.loads((path / SPEC_FILE).read_text()))
            state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            encoders.load_state_dict(state)
            return encoders
        if not path.is_file():
            raise DataError(
                f"{path}: pretrained encoders not found (a .ckpt or a folder); create them with "
                "`casebook fit --config configs/clip_pretrainer.yaml`, or train from scratch with "
                "--model.pretrained null"
            )
        # EncoderConfig: the hyper-parameters of a ClipPretrainer built in Python before they
        # were saved as plain dicts
        checkpoint = load_checkpoint(path, allowed=(EncoderConfig,))
        if CHECKPOINT_KEY not in checkpoint:
            raise DataError(f"{path}: not a ClipPretrainer checkpoint (no {CHECKPOINT_KEY!r})")
        encoders = cls(checkpoint[CHECKPOINT_KEY])
        prefix = "encoders."
        state = {
            k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
        }
        encoders.load_state_dict(state)
        return encoders
