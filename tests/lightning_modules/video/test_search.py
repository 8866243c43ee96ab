"""`casebook search`: a text query finds its moments in a folder of cached frame embeddings."""

import json

import numpy as np
import pytest
import torch

from casebook.cli import main as casebook_main
from casebook.common.errors import DataError
from datamodules.cache import default_cache_dir
from datamodules.video.procedural import all_step_texts
from datamodules.video.tokenizer import cached_wordpiece
from lightning_modules.video.encoders import ClipEncoders, EncoderConfig
from lightning_modules.video.heads import AttendAlignHead
from lightning_modules.video.search import (
    AlignerFrameScorer,
    MomentIndex,
    ProposalConfig,
    QueryEncoder,
    frame_iou,
    moving_average,
    propose_moments,
)

DIM = 16
QUERY = "cut the tomato"


@pytest.fixture(scope="module")
def encoders_dir(tmp_path_factory):
    """Tiny untrained encoders over the procedural texts' tokenizer, saved as ClipPretrainer does."""
    torch.manual_seed(0)
    tokenizer = cached_wordpiece(all_step_texts(), default_cache_dir())
    config = EncoderConfig(
        frame_encoder="identity", text_hidden=16, text_layers=1, text_heads=2, embed_dim=DIM
    )
    encoders = ClipEncoders.build(config, len(tokenizer), tokenizer.pad_token_id, DIM)
    return encoders.save(tmp_path_factory.mktemp("encoders"))


def noise_video(rng, frames: int, dim: int = DIM) -> np.ndarray:
    return rng.standard_normal((frames, dim)).astype(np.float32)


def planted_collection(folder, query: np.ndarray, seed: int = 0) -> None:
    """Twelve videos of noise; video-07 shows the query at frames 20..31, video-03 a faint,
    noisier version of it at frames 5..14."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    direction = query / np.linalg.norm(query)
    for i in range(12):
        video = noise_video(rng, 40 + 3 * i)
        if i == 7:
            video[20:32] = 6 * direction + 0.5 * rng.standard_normal((12, DIM))
        if i == 3:
            video[5:15] = 1.5 * direction + rng.standard_normal((10, DIM))
        np.save(folder / f"video-{i:02d}.npy", video)


def search(folder, encoders_dir, *extra) -> tuple[int, list]:
    """`casebook search FOLDER QUERY` (no query with --evaluate): (exit code, the JSON written)."""
    out = folder.parent / "moments.json"
    query = [] if "--evaluate" in extra else [QUERY]
    argv = ["search", str(folder), *query, "--encoders", str(encoders_dir), "--out", str(out)]
    with pytest.raises(SystemExit) as exited:
        casebook_main([*argv, *extra])
    return exited.value.code, json.loads(out.read_text()) if out.exists() else []


def test_search_returns_the_planted_moment_first(tmp_path, encoders_dir, capsys):
    query = QueryEncoder.load(encoders_dir)([QUERY])[0].numpy()
    planted_collection(tmp_path / "features", query)
    code, results = search(tmp_path / "features", encoders_dir, "--top_k", "3")
    assert code == 0
    assert results[0]["query"] == QUERY
    moments = results[0]["moments"]
    assert len(moments) == 3
    top = moments[0]
    # within a frame of the planted frames 20..31 (the scores are smoothed over three frames)
    assert top["video_id"] == "video-07"
    assert frame_iou((top["start"], top["end"]), (20, 32)) >= 11 / 12
    assert moments[1]["video_id"] == "video-03"  # the faint copy comes next
    assert moments[0]["score"] > moments[1]["score"] > moments[2]["score"]
    printed = capsys.readouterr().out
    assert f"query: {QUERY}" in printed and "video-07" in printed


def test_seconds_follow_the_embeddings_rate(tmp_path, encoders_dir):
    query = QueryEncoder.load(encoders_dir)([QUERY])[0].numpy()
    planted_collection(tmp_path / "features", query)
    _, results = search(tmp_path / "features", encoders_dir, "--fps", "2", "--top_k", "1")
    top = results[0]["moments"][0]
    assert top["video_id"] == "video-07"
    assert frame_iou((2 * top["start"], 2 * top["end"]), (20, 32)) >= 11 / 12
    assert top["start"] * 2 == int(top["start"] * 2)  # half-second steps


def test_search_only_among_the_given_videos(tmp_path, encoders_dir):
    query = QueryEncoder.load(encoders_dir)([QUERY])[0].numpy()
    planted_collection(tmp_path / "features", query)
    _, results = search(tmp_path / "features", encoders_dir, "--videos", "video-03", "video-05")
    assert {m["video_id"] for m in results[0]["moments"]} <= {"video-03", "video-05"}
    assert results[0]["moments"][0]["video_id"] == "video-03"


def test_window_scores_are_the_mean_cosine_of_their_frames(tmp_path):
    rng = np.random.default_rng(1)
    videos = [("a", noise_video(rng, 37)), ("b", noise_video(rng, 5))]
    index = MomentIndex.write(videos, tmp_path / "index", window=8, stride=4)
    query = rng.standard_normal(DIM).astype(np.float32)
    query /= np.linalg.norm(query)
    frames = videos[0][1] / np.linalg.norm(videos[0][1], axis=1, keepdims=True)
    starts = [0, 4, 8, 12, 16, 20, 24, 28, 29]  # the last window ends at the video's end
    expected = [(frames[s : s + 8] @ query).mean() for s in starts]
    expected.append(
        (videos[1][1] / np.linalg.norm(videos[1][1], axis=1, keepdims=True) @ query).mean()
    )
    assert (index.windows @ torch.from_numpy(query)).numpy() == pytest.approx(expected, abs=1e-5)
    assert index.window_video.tolist() == [0] * 9 + [1]


def test_the_index_is_reused_until_a_file_changes(tmp_path):
    rng = np.random.default_rng(2)
    features = tmp_path / "features"
    features.mkdir()
    for name in ("a", "b"):
        np.save(features / f"{name}.npy", noise_video(rng, 20))
    first = MomentIndex.of_folder(features)
    manifest = (features / ".search_index" / "manifest.json").stat().st_mtime_ns
    assert len(MomentIndex.of_folder(features)) == 2
    assert (features / ".search_index" / "manifest.json").stat().st_mtime_ns == manifest
    np.save(features / "c.npy", noise_video(rng, 30))
    assert MomentIndex.of_folder(features).video_ids == ["a", "b", "c"]
    assert len(first) == 2


@pytest.mark.parametrize("manifest", ['{"version": 2, "dim', '{"version": 1, "videos": []}'])
def test_a_half_written_or_older_index_is_built_again(tmp_path, manifest):
    features = tmp_path / "features"
    features.mkdir()
    np.save(features / "a.npy", noise_video(np.random.default_rng(8), 20))
    (features / ".search_index").mkdir()
    (features / ".search_index" / "manifest.json").write_text(manifest)
    assert MomentIndex.of_folder(features).video_ids == ["a"]
    assert json.loads((features / ".search_index" / "manifest.json").read_text())["version"] == 2


def test_query_embeddings_still_in_an_autograd_graph_are_searched(tmp_path):
    rng = np.random.default_rng(9)
    index = MomentIndex.write([("a", noise_video(rng, 30))], tmp_path / "index")
    query = torch.from_numpy(noise_video(rng, 1)).requires_grad_()
    projected = query * 2  # as an encoder called outside no_grad returns it
    assert index.search(projected, top_k=1) == index.search(projected.detach(), top_k=1)


def test_proposals_are_the_runs_above_half_the_peak_best_first():
    scores = np.full(60, 0.05)
    scores[10:22] = np.linspace(0.5, 0.7, 12)  # one moment, brighter towards its end
    scores[40:46] = 0.3  # a fainter one: below half the peak, no moment
    scores[50:56] = 0.45
    proposals = propose_moments(scores)
    # within a frame of (10, 22); the fainter (50, 56) loses its smoothed edge frames
    assert [p[:2] for p in proposals] == [(11, 22), (51, 55)]
    assert proposals[0][2] == pytest.approx(moving_average(scores, 3)[11:22].mean())
    assert len(propose_moments(scores, limit=1)) == 1


def test_context_contrast_prefers_the_whole_moment_to_its_bright_part():
    scores = np.full(60, 0.05)
    scores[10:22] = np.linspace(0.5, 0.7, 12)
    levels = (0.25, 0.5, 0.75)
    inner_only = propose_moments(scores, ProposalConfig(levels=levels))
    contrasted = propose_moments(scores, ProposalConfig(levels=levels, context_weight=1.0))
    assert frame_iou(inner_only[0][:2], (10, 22)) < 0.8  # the brightest part has the best mean
    assert frame_iou(contrasted[0][:2], (10, 22)) >= 11 / 12  # the whole stands out most


def test_frame_scorer_decides_the_moments(tmp_path):
    rng = np.random.default_rng(3)
    index = MomentIndex.write([("a", noise_video(rng, 50))], tmp_path / "index")
    calls = []

    def scorer(frames, query):
        calls.append((frames.shape, query))
        scores = np.zeros(len(frames))
        scores[30:41] = 1.0
        return scores

    moments = index.search(torch.ones(1, DIM), top_k=1, frame_scorer=scorer)
    assert (moments[0][0].start, moments[0][0].end) == (30.0, 41.0)
    assert calls == [((50, DIM), 0)]


def test_aligner_scores_are_its_heads_probability_of_the_query_step_times_the_cosine(tmp_path):
    torch.manual_seed(0)
    head = AttendAlignHead(DIM, hidden=16, layers=1, heads=2).eval()
    checkpoint = tmp_path / "aligner.ckpt"
    hyper = {"head": "attend_align", "freeze_encoders": True, "hidden": 16, "layers": 1, "heads": 2}
    state = {f"head.{k}": v for k, v in head.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hyper}, checkpoint)
    queries = torch.randn(2, DIM)
    frames = np.random.default_rng(4).standard_normal((30, DIM)).astype(np.float32)
    probability = AlignerFrameScorer(checkpoint, queries, times_similarity=False)(frames, 1)
    mask = torch.ones(1, 30, dtype=torch.bool)
    with torch.no_grad():
        logits = head(torch.from_numpy(frames)[None], queries[1][None, None], mask, mask[:, :1])
    assert probability == pytest.approx(logits[0].softmax(-1)[:, 1].numpy(), abs=1e-5)
    cosine = frames @ queries[1].numpy() / np.linalg.norm(frames, axis=1) / queries[1].norm().item()
    scores = AlignerFrameScorer(checkpoint, queries)(frames, 1)
    assert scores == pytest.approx(probability * cosine, abs=1e-5)


def test_aligner_without_per_frame_scores_is_refused_in_one_line(tmp_path):
    checkpoint = tmp_path / "lstm.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"head": "lstm"}}, checkpoint)
    with pytest.raises(DataError, match="lstm.ckpt: .*attend_align"):
        AlignerFrameScorer(checkpoint, torch.zeros(1, DIM))


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_missing_folder_is_named(tmp_path, encoders_dir, capsys):
    code, _ = search(tmp_path / "nowhere", encoders_dir)
    assert code == 2
    line = one_error_line(capsys)
    assert "nowhere: no such folder" in line and "casebook predict" in line


def test_an_empty_folder_is_named(tmp_path, encoders_dir, capsys):
    (tmp_path / "empty").mkdir()
    code, _ = search(tmp_path / "empty", encoders_dir)
    assert code == 2
    assert "empty: no <video_id>.npy frame embeddings" in one_error_line(capsys)


def test_an_embedding_of_another_width_is_named(tmp_path, encoders_dir, capsys):
    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(5)
    np.save(features / "a.npy", noise_video(rng, 20))
    np.save(features / "odd.npy", noise_video(rng, 20, dim=8))
    code, _ = search(features, encoders_dir)
    assert code == 2
    assert "odd.npy has 8-d embeddings, a.npy has 16-d" in one_error_line(capsys)


def test_embeddings_the_encoders_did_not_write_are_named(tmp_path, encoders_dir, capsys):
    features = tmp_path / "features"
    features.mkdir()
    np.save(features / "a.npy", noise_video(np.random.default_rng(6), 20, dim=8))
    code, _ = search(features, encoders_dir)
    assert code == 2
    assert "frame embeddings are 8-d but the query is 16-d" in one_error_line(capsys)


def test_a_video_id_without_features_is_named(tmp_path, encoders_dir, capsys):
    query = QueryEncoder.load(encoders_dir)([QUERY])[0].numpy()
    planted_collection(tmp_path / "features", query)
    code, _ = search(tmp_path / "features", encoders_dir, "--videos", "video-03", "ghost")
    assert code == 2
    assert "video ghost: no features" in one_error_line(capsys)


def test_missing_encoders_name_the_command_that_makes_them(tmp_path, capsys):
    features = tmp_path / "features"
    features.mkdir()
    np.save(features / "a.npy", noise_video(np.random.default_rng(7), 20))
    code, _ = search(features, tmp_path / "no-encoders")
    assert code == 2
    assert "casebook fit --config configs/clip_pretrainer.yaml" in one_error_line(capsys)


def test_an_out_path_that_cannot_be_written_is_named(tmp_path, encoders_dir, capsys):
    query = QueryEncoder.load(encoders_dir)([QUERY])[0].numpy()
    planted_collection(tmp_path / "features", query)
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "moments.json"
    argv = ["search", str(tmp_path / "features"), QUERY, "--encoders", str(encoders_dir)]
    with pytest.raises(SystemExit) as exited:
        casebook_main([*argv, "--out", str(out)])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the "indexing" progress line
    assert last.startswith(f"casebook: error: --out {out}: cannot write the moments")


@pytest.mark.parametrize(
    ("extra", "problem"),
    [(["--top_k", "0"], "--top_k must be at least 1"), (["--fps", "0"], "--fps must be positive")],
)
def test_a_bad_value_is_named_before_anything_is_read(tmp_path, extra, problem, capsys):
    code, _ = search(tmp_path / "nowhere", tmp_path / "no-encoders", *extra)
    assert code == 2
    assert one_error_line(capsys) == f"casebook: error: {problem}"


def write_annotations(path, entries: dict) -> None:
    path.write_text(json.dumps({"database": entries}))


def test_evaluate_scores_held_out_annotations_against_a_random_row(tmp_path, encoders_dir, capsys):
    query = QueryEncoder.load(encoders_dir)([QUERY])[0].numpy()
    planted_collection(tmp_path / "features", query)
    annotations = tmp_path / "A.json"
    write_annotations(
        annotations,
        {
            "video-07": {
                "subset": "testing",
                "annotations": [{"segment": [20, 32], "sentence": QUERY}],
            },
            "video-03": {
                "subset": "testing",
                "annotations": [{"segment": [5, 15], "sentence": "Cut the  tomato"}],
            },
            "video-01": {
                "subset": "training",
                "annotations": [{"segment": [0, 5], "sentence": "stir"}],
            },
        },
    )
    out = tmp_path / "eval.json"
    argv = ["search", str(tmp_path / "features"), "--evaluate", str(annotations)]
    with pytest.raises(SystemExit) as exited:
        casebook_main([*argv, "--encoders", str(encoders_dir), "--out", str(out)])
    assert exited.value.code == 0
    metrics = json.loads(out.read_text())["metrics"]
    # one query (the two sentences differ only in case and spacing), two true moments, both found
    assert metrics["search"]["r1@0.5"] == 1.0 and metrics["search"]["r5@0.5"] == 1.0
    assert metrics["search"]["map@0.5"] == 1.0
    assert metrics["random"]["map@0.5"] < 1.0
    printed = capsys.readouterr().out
    assert "1 queries, 2 true moments in 2 videos" in printed and "| random" in printed


def test_evaluate_names_an_annotated_video_without_features(tmp_path, encoders_dir, capsys):
    query = QueryEncoder.load(encoders_dir)([QUERY])[0].numpy()
    planted_collection(tmp_path / "features", query)
    annotations = tmp_path / "A.json"
    write_annotations(
        annotations,
        {"lost": {"subset": "testing", "annotations": [{"segment": [1, 2], "sentence": QUERY}]}},
    )
    code, _ = search(tmp_path / "features", encoders_dir, "--evaluate", str(annotations))
    assert code == 2
    assert "video lost: no features in" in one_error_line(capsys)
