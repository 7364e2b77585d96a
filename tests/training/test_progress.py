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
