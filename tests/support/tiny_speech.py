"""The tiny wav2vec2 shape every speech test builds (`--model.network.*`, `Wav2Vec2Network`)."""

# 4 layers, so that a half-size student (2 layers) differs from the teacher
TINY_NETWORK = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16],
    "num_conv_pos_embeddings": 8,
    "num_conv_pos_embedding_groups": 4,
}


def network_options(**changes) -> list[str]:
    """The tiny shape (with `changes`) as command-line options."""
    return [f"--model.network.{k}={v}" for k, v in (TINY_NETWORK | changes).items()]
