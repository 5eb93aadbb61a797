"""core.cli.run: user errors, including any OSError on a path, are one stderr line and exit 2."""
import errno
import os

import pytest

from core.cli import run
from core.errors import InputError
from core.io import write_json


def _raise(err):
    def main(argv):
        raise err
    return main


def test_input_error_is_one_line(capsys):
    assert run(_raise(InputError("a.txt:3: bad")), []) == 2
    assert capsys.readouterr().err == "error: a.txt:3: bad\n"


@pytest.mark.parametrize("err,line", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "g.json"), "g.json: No such file or directory"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out"), "out: Is a directory"),
    (FileExistsError(errno.EEXIST, "File exists", "x"), "x: File exists"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "/root/x: Permission denied"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/x"), "f/x: Not a directory"),
    (OSError("disk on fire"), "disk on fire"),  # no file name: the message as is
])
def test_os_errors_name_the_file(capsys, err, line):
    assert run(_raise(err), []) == 2
    assert capsys.readouterr().err == f"error: {line}\n"


def test_atomic_write_onto_a_folder_names_the_folder(tmp_path, capsys):
    target = tmp_path / "out.json"
    target.mkdir()
    assert run(lambda argv: write_json(target, []), []) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target}: Is a directory\n"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]  # no temp file left
