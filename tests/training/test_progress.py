"""Where the progress bar shows: a terminal or a notebook, never a log or CI."""


def test_the_progress_bar_shows_in_a_notebook_but_not_in_a_log_or_ci(monkeypatch):
    import sys
    import types

    from distillkit.training import callbacks

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("DISTILLKIT_NO_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not callbacks.progress_enabled()  # output going to a log
    kernel = type("ZMQInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    assert callbacks.in_notebook() and callbacks.progress_enabled()
    monkeypatch.setenv("CI", "1")
    assert not callbacks.progress_enabled()


def test_the_bar_and_the_log_say_which_model_trains(monkeypatch, config_file, tmp_path):
    from types import SimpleNamespace

    from distillkit.cli.main import main
    from distillkit.training import callbacks

    monkeypatch.setattr(callbacks, "progress_enabled", lambda: True)
    bar = callbacks.ProgressBar()
    bar.on_fit_start(SimpleNamespace(is_main_process=True, total_steps=5, step=0, label="distilled"))
    assert bar._progress.tasks[0].description == "distilled"
    bar.on_fit_end(None)
    monkeypatch.setattr(callbacks, "progress_enabled", lambda: False)
    assert main(["compare", str(config_file), "--out", str(tmp_path / "r")]) == 0
    log = (tmp_path / "r" / "log.txt").read_text()
    for name in ("teacher", "student_alone", "distilled"):
        assert f"{name}: training" in log
