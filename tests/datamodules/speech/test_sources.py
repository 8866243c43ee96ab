import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from casebook.common.errors import DataError
from datamodules.speech import SpeechDataModule


def _tts_rows(corpus, split="train"):
    return [json.loads(line) for line in corpus.manifests[split].read_text().splitlines()]


def _write_manifest(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def manifest_dir(tmp_path, tiny_corpus):
    """A folder with audio under `audio/` and manifests using paths relative to the folder."""
    shutil.copytree(tiny_corpus.root / "wavs", tmp_path / "audio")
    for split in ("train", "val", "test"):
        rows = [
            {
                "audio_filepath": r["audio_filepath"].replace("wavs/", "audio/"),
                "text": r["text"],
                "duration": r["duration"],
            }
            for r in _tts_rows(tiny_corpus, split)
        ]
        _write_manifest(tmp_path / f"{split}.jsonl", rows)
    return tmp_path


def _manifest_module(folder, **kwargs):
    return SpeechDataModule(
        source="manifest",
        train_manifest=str(folder / "train.jsonl"),
        val_manifest=str(folder / "val.jsonl"),
        test_manifest=str(folder / "test.jsonl"),
        batch_size=4,
        **kwargs,
    )


def test_manifest_relative_paths_resolve_against_the_manifest_folder(manifest_dir, monkeypatch):
    monkeypatch.chdir(manifest_dir.parent)  # not the manifest's folder
    dm = _manifest_module(manifest_dir)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) == 12
    assert all(u.audio_path.is_file() for u in train.utterances)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_values"].shape[0] == len(batch["ids"])


def test_librispeech_layout_reads(tmp_path, tiny_corpus):
    rows = _tts_rows(tiny_corpus)[:5]
    chapter = tmp_path / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    lines = []
    for i, r in enumerate(rows):
        utt = f"84-121123-{i:04d}"
        samples, rate = sf.read(str(tiny_corpus.root / r["audio_filepath"]))
        sf.write(str(chapter / f"{utt}.flac"), samples, rate)
        lines.append(f"{utt} {r['text'].upper().rstrip('.?')}")
    (chapter / "84-121123.trans.txt").write_text("\n".join(lines) + "\n")
    dm = SpeechDataModule(
        source="librispeech", librispeech_root=str(tmp_path), librispeech_val="dev-clean"
    )
    dm.setup("validate")
    utterances = dm.datasets["val"].utterances
    assert sorted(u.id for u in utterances) == [f"84-121123-{i:04d}" for i in range(5)]
    assert {u.speaker for u in utterances} == {"84"}
    assert utterances[0].text == lines[0].split(" ", 1)[1].replace(",", "")
    batch = next(iter(dm.val_dataloader()))
    assert batch["labels"].shape[0] == len(batch["texts"])


def test_missing_librispeech_subset_names_the_folder(tmp_path):
    dm = SpeechDataModule(source="librispeech", librispeech_root=str(tmp_path))
    with pytest.raises(DataError, match="dev-clean"):
        dm.setup("validate")


def _bad_row(case, folder, good):
    """A manifest row (or raw line) with one problem, and the text the error must contain."""
    if case == "missing_file":
        return {**good, "audio_filepath": "audio/nowhere.wav"}, "nowhere.wav"
    if case == "unreadable_audio":
        (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage, not audio at all" * 10)
        return {**good, "audio_filepath": "corrupt.wav"}, "corrupt.wav"
    if case == "empty_transcript":
        return {**good, "text": " ... "}, "empty"
    if case == "out_of_vocabulary":
        return {**good, "text": "I bought 3 apples"}, "'3'"
    if case == "too_short":
        sf.write(str(folder / "blip.wav"), np.full(1600, 0.1, np.float32), 16000)
        long_text = "this sentence is far too long to be spoken in a tenth of a second"
        return {
            **good,
            "audio_filepath": "blip.wav",
            "text": long_text,
            "duration": 0.1,
        }, "too short"
    if case == "malformed_row":
        return '{"audio_filepath": "x.wav", "text": ', "JSON"
    raise ValueError(case)


BAD_CASES = [
    "missing_file",
    "unreadable_audio",
    "empty_transcript",
    "out_of_vocabulary",
    "too_short",
    "malformed_row",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_stops_with_one_line_naming_file_and_row(case, manifest_dir):
    good = json.loads((manifest_dir / "train.jsonl").read_text().splitlines()[0])
    bad, detail = _bad_row(case, manifest_dir, {**good, "id": "utt-bad"})
    rows = (manifest_dir / "train.jsonl").read_text().splitlines()
    _write_manifest(manifest_dir / "train.jsonl", [rows[0], bad, *rows[1:]])
    dm = _manifest_module(manifest_dir)
    with pytest.raises(DataError) as caught:
        dm.setup("fit")
    message = str(caught.value)
    assert "\n" not in message
    assert "train.jsonl: row 2" in message
    assert detail in message
    if case != "malformed_row":
        assert "utt-bad" in message


@pytest.mark.parametrize("case", BAD_CASES)
def test_skip_mode_drops_and_counts_bad_input(case, manifest_dir):
    good = json.loads((manifest_dir / "train.jsonl").read_text().splitlines()[0])
    bad, _ = _bad_row(case, manifest_dir, good)
    rows = (manifest_dir / "train.jsonl").read_text().splitlines()
    _write_manifest(manifest_dir / "train.jsonl", [bad, *rows, bad])
    dm = _manifest_module(manifest_dir, on_bad_input="skip")
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 12
    assert dm.bad_input_counts == {f"train/skipped_{case}": 2}


def test_unlabeled_audio_reads_from_a_manifest_without_text_or_a_folder(manifest_dir, tmp_path):
    for split in ("train", "val", "test"):  # drop every transcript
        path = manifest_dir / f"{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        _write_manifest(path, [{k: v for k, v in r.items() if k != "text"} for r in rows])
    with pytest.raises(DataError, match=r"train.jsonl: row 1: no text string"):
        _manifest_module(manifest_dir).setup("fit")
    unlabeled = _manifest_module(manifest_dir, labeled=False)
    unlabeled.setup("fit")
    assert len(unlabeled.datasets["train"]) == 12

    folder = SpeechDataModule(
        source="folder", audio_dir=str(manifest_dir / "audio"), labeled=False, batch_size=4
    )
    folder.setup()
    splits = {name: {u.id for u in folder.datasets[name].utterances} for name in folder.datasets}
    everything = {p.relative_to(manifest_dir / "audio").as_posix()
                  for p in (manifest_dir / "audio").rglob("*.wav")}  # fmt: skip
    assert set().union(*splits.values()) == everything
    assert sum(map(len, splits.values())) == len(everything)  # disjoint
    with pytest.raises(ValueError, match="labeled false"):
        SpeechDataModule(source="folder", audio_dir=str(manifest_dir / "audio")).setup("fit")
    (tmp_path / "empty").mkdir()
    for name, message in (("empty", "no .wav or .flac files under it"), ("absent", "not exist")):
        with pytest.raises(DataError, match=f"{name}: (audio folder does )?{message}"):
            SpeechDataModule(source="folder", audio_dir=str(tmp_path / name), labeled=False).setup(
                "fit"
            )
