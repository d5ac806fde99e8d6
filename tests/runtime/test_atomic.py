"""Writing a directory whole or not at all: `atomic.staged_directory`."""

import pytest

from tf_finetune.runtime import atomic


def test_the_directory_appears_only_when_complete(tmp_path):
    final = tmp_path / "new" / "report"
    with atomic.staged_directory(final) as staging:
        (staging / "a.txt").write_text("a")
        assert not final.exists()
        assert staging.parent == final.parent and staging.name.startswith(".tmp-report-")
    assert (final / "a.txt").read_text() == "a"
    assert [p.name for p in final.parent.iterdir()] == ["report"]


def test_a_failing_block_leaves_nothing(tmp_path):
    final = tmp_path / "report"
    with pytest.raises(RuntimeError, match="half-way"), atomic.staged_directory(final) as staging:
        (staging / "a.txt").write_text("a")
        raise RuntimeError("half-way")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_refused_and_kept(tmp_path):
    final = tmp_path / "report"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(FileExistsError), atomic.staged_directory(final):
        pytest.fail("the block must not run")
    # One made while the block ran (even an empty one) is not replaced either.
    other = tmp_path / "other"
    with pytest.raises(FileExistsError), atomic.staged_directory(other):
        other.mkdir()
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "report"]


def test_a_failed_rename_leaves_no_staging(tmp_path, monkeypatch):
    monkeypatch.setenv(atomic.FAULT_VARIABLE, "rename:report")
    final = tmp_path / "report"
    with pytest.raises(OSError, match="injected"), atomic.staged_directory(final) as staging:
        (staging / "a.txt").write_text("a")
    assert list(tmp_path.iterdir()) == []
