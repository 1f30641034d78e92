"""``require_file``: a folder is called a folder, a missing path missing, with the fix."""

import pytest

from bgm2pose.sensing.errors import UserError, require_file


class _Error(UserError):
    pass


def test_a_file_passes_a_folder_and_a_missing_path_are_named_as_such(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    require_file(tmp_path / "a.txt", "thing", "make one", _Error)
    with pytest.raises(_Error, match=f"^thing {tmp_path} is a folder, not a file; pass the file"):
        require_file(tmp_path, "thing", "make one", _Error)
    with pytest.raises(_Error, match="^thing .*b.txt does not exist; make one$"):
        require_file(tmp_path / "b.txt", "thing", "make one", _Error)
