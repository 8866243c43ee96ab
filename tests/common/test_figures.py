"""log_figure: rank 0 saves a PNG under <default_root_dir>/figures; other ranks only get its path."""

from types import SimpleNamespace

from matplotlib.figure import Figure

from casebook.common.figures import log_figure


def _figure() -> Figure:
    figure = Figure(figsize=(2, 1))
    figure.subplots().plot([0, 1], [1, 0])
    return figure


def test_rank_zero_saves_the_figure_as_png_named_after_its_key(tmp_path):
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=True, loggers=[])
    path = log_figure(trainer, "test/equity", _figure())
    assert path == tmp_path / "figures" / "test-equity.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_other_ranks_write_nothing(tmp_path):
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=False, loggers=[])
    assert not log_figure(trainer, "test/equity", _figure()).exists()
