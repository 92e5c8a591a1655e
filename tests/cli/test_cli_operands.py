"""Operand errors: one clear line, exit 1, nothing written. Then the naming rules of planner/operands.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli_support import assert_one_error_line, call_zcp, run_zcp, snapshot
from conftest import need_root

from zcp.errors import ExitCode


def _tree(root: Path) -> None:
    """f (a file), hl (a hard link to it), g (a file), d/ with d/x, e/ with e/f (clashes with ./f)."""
    (root / "f").write_bytes(b"file f\n")
    os.link(root / "f", root / "hl")
    (root / "g").write_bytes(b"file g\n")
    (root / "d").mkdir()
    (root / "d" / "x").write_bytes(b"in d\n")
    (root / "e").mkdir()
    (root / "e" / "f").write_bytes(b"another f\n")


# (arguments, a word the message must hold); paths are relative to the test's folder.
OPERAND_ERRORS = {
    "missing source": (["nope", "out"], "nope"),
    "missing source among several": (["f", "nope", "out/"], "nope"),
    "same file": (["f", "f"], "same file"),
    "same file through a hard link": (["f", "hl"], "same file"),
    "folder contents onto itself": (["-a", "d/", "d/"], "same file"),
    "folder onto itself": (["-a", "d/", "d"], "same file"),
    "folder into itself": (["-a", "d", "d/sub"], "itself"),
    "folder into itself, slash target": (["-a", "d", "d/sub/"], "itself"),
    "folder into itself, existing target": (["-r", "d", "d"], "itself"),
    "destination parent missing": (["f", "no/such/out"], "no/such"),
    "folder target parent missing": (["f", "g", "no/such/"], "no/such"),
    "folder without -r": (["d", "out"], "-r"),
    "several sources onto a file": (["f", "g", "hl"], "not a folder"),
    "two sources, one name": (["f", "e/f", "out/"], "both"),
    "folder contents onto a file": (["-a", "d/", "g"], "non-folder"),
    "folder onto a file": (["-a", "d", "g"], "non-folder"),
    "folder onto a device": (["-a", "d/", "/dev/null"], "non-folder"),
    "file into a file given as a folder": (["f", "g/"], "not a folder"),
    "only one operand": (["f"], "destination"),
    "unknown option": (["--bogus", "f", "out"], "--bogus"),
    "unknown method": (["--method=teleport", "f", "out"], "teleport"),
    "no reflink, forced copy_file_range": (["--reflink=never", "--method=copy_file_range", "f", "out"], "clones"),
    "in place by reflink": (["--inplace", "--reflink=always", "f", "g"], "--inplace"),
    "in place by forced reflink": (["--inplace", "--method=reflink", "f", "g"], "--inplace"),
}


@pytest.mark.parametrize("args, word", OPERAND_ERRORS.values(), ids=OPERAND_ERRORS.keys())
def test_operand_error_is_one_line_exit_1_and_writes_nothing(tmp_path, monkeypatch, capsys, args, word):
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = call_zcp(capsys, *args)
    assert result.code == ExitCode.USAGE, result
    assert word in assert_one_error_line(result)
    assert result.out == ""
    assert snapshot(tmp_path) == before


def test_operand_error_from_a_real_process(tmp_path):
    """The same contract end to end, through the interpreter's own exit path."""
    _tree(tmp_path)
    before = snapshot(tmp_path)
    result = run_zcp("-a", "d", "d/sub", cwd=tmp_path)
    assert result.code == ExitCode.USAGE
    assert "itself" in assert_one_error_line(result)
    assert result.out == ""
    assert snapshot(tmp_path) == before


def _files(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for a folder) of everything below ``root``."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def _naming_tree(root: Path, existing: list[str]) -> None:
    """src/ (a, sub/b), file (a file), other (a file), and the folders named in ``existing``."""
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a").write_bytes(b"A")
    (root / "src" / "sub" / "b").write_bytes(b"B")
    (root / "file").write_bytes(b"F")
    (root / "other").write_bytes(b"O")
    for name in existing:
        (root / name).mkdir()


SRC_TREE = {"a": b"A", "sub": None, "sub/b": b"B"}


def _under(prefix: str, tree: dict[str, bytes | None]) -> dict[str, bytes | None]:
    return {prefix: None, **{f"{prefix}/{k}": v for k, v in tree.items()}}


# (existing folders, arguments, what "dst" holds afterwards: {} = dst is a file, see expect_file)
NAMING = {
    "src to a new name: dst is the copy": ([], ["-r", "src", "dst"], SRC_TREE),
    "src into an existing folder": (["dst"], ["-r", "src", "dst"], _under("src", SRC_TREE)),
    "src/ into an existing folder: its contents": (["dst"], ["-r", "src/", "dst"], SRC_TREE),
    "src/ to a new name: its contents": ([], ["-r", "src/", "dst"], SRC_TREE),
    "src to a new name ending in /": ([], ["-r", "src", "dst/"], _under("src", SRC_TREE)),
    "file into an existing folder": (["dst"], ["file", "dst"], {"file": b"F"}),
    "file to a new name ending in /": ([], ["file", "dst/"], {"file": b"F"}),
    "several sources into a new folder": ([], ["file", "other", "dst"], {"file": b"F", "other": b"O"}),
    "several sources, files and a folder": (["dst"], ["-r", "file", "src", "dst/"],
                                            {"file": b"F", **_under("src", SRC_TREE)}),
    "src/ and a file into one folder": ([], ["-r", "src/", "file", "dst/"], {**SRC_TREE, "file": b"F"}),
}


@pytest.mark.parametrize("existing, args, expected", NAMING.values(), ids=NAMING.keys())
def test_naming_rules(tmp_path, monkeypatch, capsys, existing, args, expected):
    _naming_tree(tmp_path, existing)
    monkeypatch.chdir(tmp_path)
    result = call_zcp(capsys, *args)
    assert (result.code, result.err) == (0, "")
    assert _files(tmp_path / "dst") == expected


def test_file_to_a_new_name_is_that_file(tmp_path, monkeypatch, capsys):
    _naming_tree(tmp_path, [])
    monkeypatch.chdir(tmp_path)
    assert call_zcp(capsys, "file", "dst").code == 0
    assert (tmp_path / "dst").read_bytes() == b"F"


def test_file_onto_an_existing_file_replaces_it(tmp_path, monkeypatch, capsys):
    _naming_tree(tmp_path, [])
    (tmp_path / "dst").write_bytes(b"old content, longer than the new one")
    monkeypatch.chdir(tmp_path)
    assert call_zcp(capsys, "file", "dst").code == 0
    assert (tmp_path / "dst").read_bytes() == b"F"


def test_symlink_operand_is_followed_without_links_and_kept_with_a(tmp_path, monkeypatch, capsys):
    _naming_tree(tmp_path, [])
    os.symlink("file", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    assert call_zcp(capsys, "link", "followed").code == 0
    assert call_zcp(capsys, "-a", "link", "kept").code == 0
    assert not os.path.islink("followed") and Path("followed").read_bytes() == b"F"
    assert os.readlink("kept") == "file"


def test_folder_onto_a_symlink_to_a_folder_goes_through_it(tmp_path, monkeypatch, capsys):
    """As cp and rsync do: the link named as the destination stays, its folder gets the contents
    (with --delete too: the link is not a stranger to remove)."""
    _tree(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "old").write_bytes(b"old")
    os.symlink("real", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    assert call_zcp(capsys, "-a", "--delete", "d/", "link").code == 0
    assert os.readlink("link") == "real"
    assert sorted(os.listdir("real")) == ["x"]
    assert call_zcp(capsys, "-a", "e", "link").code == 0
    assert Path("real/e/f").read_bytes() == b"another f\n"


def test_a_folder_into_itself_through_a_bind_mount_is_refused(tmp_path, monkeypatch, capsys):
    """Names cannot tell that view/ is src/ again; (dev, ino) can. Copying would walk into its own
    output until the names grew too long, filling the source."""
    need_root()
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "f").write_bytes(b"f")
    (tmp_path / "view").mkdir()
    subprocess.run(["mount", "--bind", tmp_path / "src", tmp_path / "view"], check=True)
    try:
        before = snapshot(tmp_path / "src")
        result = call_zcp(capsys, "-a", f"{tmp_path}/src/", tmp_path / "view" / "sub" / "copy")
        assert result.code == ExitCode.USAGE
        assert "into itself" in assert_one_error_line(result)
        assert snapshot(tmp_path / "src") == before
    finally:
        subprocess.run(["umount", tmp_path / "view"], check=True)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_destination_inside_the_source_through_a_bind_mount_is_copied_once(tmp_path, capsys, jobs):
    """other/bm is src/sub: no name of the destination's folders is the source, but the walk meets
    the destination itself in the source. It is left out with a warning (rsync copies once too)."""
    need_root()
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a").write_bytes(b"a")
    (tmp_path / "src" / "sub" / "b").write_bytes(b"b")
    (tmp_path / "other" / "bm").mkdir(parents=True)
    subprocess.run(["mount", "--bind", tmp_path / "src" / "sub", tmp_path / "other" / "bm"], check=True)
    try:
        result = call_zcp(capsys, "-a", "-j", jobs, tmp_path / "src", tmp_path / "other" / "bm" / "x")
        assert result.code == 0, result
        assert "it is the destination itself" in result.err
        copy = tmp_path / "src" / "sub" / "x"
        assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == ["a", "sub", "sub/b"]
    finally:
        subprocess.run(["umount", tmp_path / "other" / "bm"], check=True)


def test_a_destination_through_a_symlink_and_dotdot_is_where_the_kernel_says(tmp_path, monkeypatch, capsys):
    """link/../x is x beside the link's target, not beside the link, as cp finds it."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "adir").mkdir()
    os.symlink("real/sub", tmp_path / "lsub")
    (tmp_path / "f").write_bytes(b"f")
    monkeypatch.chdir(tmp_path)
    assert call_zcp(capsys, "f", "lsub/../adir/new").code == 0
    assert (tmp_path / "real" / "adir" / "new").read_bytes() == b"f"


def test_filters_without_their_order_are_refused_not_dropped(tmp_path):
    """Embedding the typer app without main() loses the order of --exclude/--include: an error,
    never a copy that silently ignores them."""
    from typer.testing import CliRunner

    from zcp.cli.app import app

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "skip.o").write_bytes(b"o")
    result = CliRunner().invoke(app, ["-a", "--exclude", "*.o", f"{tmp_path}/src/", str(tmp_path / "dst")])
    assert result.exit_code != 0
    assert "filters need the command line in order" in str(result.exception)
    assert not (tmp_path / "dst").exists()
