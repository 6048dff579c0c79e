"""Where s3pot may write: the write test shared by the caches, the INT8 export and Numba."""
from s3pot.core.machine import first_writable, write_error


def test_a_new_nested_folder_is_made_and_written(tmp_path):
    folder = tmp_path / "a" / "b"
    assert write_error(folder) is None
    assert folder.is_dir() and not any(folder.iterdir())  # the test file is gone


def test_a_file_in_the_way_is_named_as_the_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    error = write_error(blocker / "cache")
    assert isinstance(error, str) and error


def test_first_writable_skips_what_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert first_writable([blocker / "cache", tmp_path / "ok"]) == tmp_path / "ok"
    assert first_writable([blocker / "x"]) is None
