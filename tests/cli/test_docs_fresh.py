"""The man page and shell completions are generated from the CLI by tools/gendocs.py: fresh, valid, working."""

from __future__ import annotations

import enum
import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated

import pytest
import typer

from conftest import need_tool
from zcp.config import Method

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man" / "zcp.1"
BASH = ROOT / "completions" / "zcp.bash"
ZSH_DIR = ROOT / "completions"
FISH = ROOT / "completions" / "zcp.fish"
METHODS = {m.value for m in Method}


def _load_gendocs() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gendocs", ROOT / "tools" / "gendocs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gendocs"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


gendocs = _load_gendocs()


# --- freshness --------------------------------------------------------------------------------


def test_committed_files_match_the_generator() -> None:
    stale = gendocs.stale_files(ROOT)
    assert not stale, f"{', '.join(stale)} out of date with the CLI: run `python tools/gendocs.py`"


@pytest.mark.parametrize("hash_seed", ["1", "2", "3"])
def test_output_does_not_depend_on_hash_order(hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "gendocs.py"), "--check"], env=env,
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, ""), "run `python tools/gendocs.py`"


def test_check_names_exactly_the_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gendocs.write_all(tmp_path)
    assert gendocs.main(["--check"], root=tmp_path) == 0
    with (tmp_path / "completions" / "zcp.fish").open("a") as fish:
        fish.write("complete -c zcp -l gone\n")
    (tmp_path / "man" / "zcp.1").unlink()
    capsys.readouterr()
    assert gendocs.main(["--check"], root=tmp_path) == 1
    named = {line.split()[1] for line in capsys.readouterr().err.splitlines()}
    assert named == {"completions/zcp.fish", "man/zcp.1"}


def test_a_member_without_a_note_stops_the_generator() -> None:
    Codes = enum.IntEnum("Codes", {"OK": 0, "NEW": 99})
    with pytest.raises(ValueError, match="NEW"):
        gendocs.require_notes(Codes, {Codes.OK: "fine"})
    gendocs.require_notes(Codes, {Codes.OK: "fine", Codes.NEW: "new"})


def test_examples_may_only_use_options_zcp_has() -> None:
    cli = gendocs.describe_cli()
    gendocs.check_example(cli, "zcp -aj4 --method=rw a b | tar -tvf -")  # -j's value, and tar's own options
    with pytest.raises(ValueError, match="--no-such-option"):
        gendocs.check_example(cli, "zcp -a --no-such-option a b")


# --- man page ---------------------------------------------------------------------------------


def test_man_page_renders_without_warnings() -> None:
    groff = need_tool("groff")
    done = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(MAN)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def test_man_page_shows_every_option_and_exit_code() -> None:
    groff = need_tool("groff")
    # plain ASCII, no hyphenation, long lines: option names come out whole
    text = subprocess.run([groff, "-man", "-Tascii", "-P-cbou", "-rHY=0", "-rLL=300n", str(MAN)],
                          capture_output=True, text=True, check=True).stdout
    words = {word.strip(",.;:()[]") for word in text.split()}
    for option in gendocs.describe_cli().options:
        assert set(option.all_names) <= words, option.names
    for code in gendocs.ExitCode:
        assert re.search(rf"^ +{int(code)} ", text, re.MULTILINE), code


# --- bash -------------------------------------------------------------------------------------

_BASH_CALL = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _zcp; printf "%s\\n" "${COMPREPLY[@]}"'


def bash_complete(script: Path, *words: str, cwd: Path | None = None) -> set[str]:
    """COMPREPLY after the completion function ran on ``words`` (the last one is being completed)."""
    bash = need_tool("bash")
    done = subprocess.run([bash, "--norc", "-c", _BASH_CALL, "bash", str(script), *words], cwd=cwd,
                          capture_output=True, text=True, check=True)
    return set(done.stdout.splitlines()) - {""}


def test_bash_completes_option_names() -> None:
    assert bash_complete(BASH, "zcp", "--me") == {"--method"}
    assert {"--archive", "--dry-run", "--help"} <= bash_complete(BASH, "zcp", "-a", "--")


def test_bash_completes_method_values() -> None:
    assert bash_complete(BASH, "zcp", "--method", "") == METHODS
    assert bash_complete(BASH, "zcp", "--method", "co") == {"copy_file_range"}
    assert bash_complete(BASH, "zcp", "--method", "=", "co") == {"copy_file_range"}  # --method=co
    assert bash_complete(BASH, "zcp", "--method", "=") == METHODS


def test_bash_completes_files_for_operands(tmp_path: Path) -> None:
    (tmp_path / "src dir").mkdir()
    (tmp_path / "src.img").touch()
    (tmp_path / "--odd").touch()
    assert bash_complete(BASH, "zcp", "-a", "sr", cwd=tmp_path) == {"src dir", "src.img"}
    assert bash_complete(BASH, "zcp", "--", "--o", cwd=tmp_path) == {"--odd"}  # after --, names only


def test_bash_completes_every_option_value_as_the_cli_declares(tmp_path: Path) -> None:
    (tmp_path / "rules.txt").touch()
    for option in gendocs.describe_cli().options:
        if option.metavar is None:
            continue
        got = bash_complete(BASH, "zcp", option.names[-1], "", cwd=tmp_path)
        want = set(option.choices) if option.choices else {"rules.txt"} if option.path_value else set()
        assert got == want, option.names


# --- zsh and fish -----------------------------------------------------------------------------

# Drives an interactive zsh in a pseudo-terminal: a key runs the real completion system and then shows a
# marker to wait for; a compadd wrapper records each match offered in a file instead of inserting it.
_ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=(${(q)1} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z "compadd() { builtin compadd -O __hits \"\$@\"; print -rl -- \$__hits >> ${(q)2} }"
zpty -w z 'complete-and-mark() { zle complete-word; zle -M END""MARK }; zle -N complete-and-mark; bindkey "^T" complete-and-mark'
zpty -w -n z "$3"$'\C-t'
zpty -r z out '*ENDMARK*'
zpty -d z
"""


def zsh_complete(tmp_path: Path, line: str) -> set[str]:
    zsh = need_tool("zsh")
    driver, hits = tmp_path / "driver.zsh", tmp_path / "hits"
    driver.write_text(_ZSH_DRIVER)
    hits.write_text("")
    subprocess.run([zsh, "-f", str(driver), str(ZSH_DIR), str(hits), line], cwd=tmp_path, timeout=30,
                   capture_output=True, check=True)
    return set(hits.read_text().splitlines()) - {""}


def test_zsh_script_parses() -> None:
    zsh = need_tool("zsh")
    done = subprocess.run([zsh, "-n", str(ZSH_DIR / "_zcp")], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def test_zsh_completes_options_and_method_values(tmp_path: Path) -> None:
    assert zsh_complete(tmp_path, "zcp --me") == {"--method"}
    assert zsh_complete(tmp_path, "zcp --method ") == METHODS


def fish_complete(script: Path, line: str) -> set[str]:
    fish = need_tool("fish")
    done = subprocess.run([fish, "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", str(script), line],
                          capture_output=True, text=True, check=True)
    return {entry.split("\t")[0] for entry in done.stdout.splitlines()}


def test_fish_script_parses_and_completes() -> None:
    fish = need_tool("fish")
    done = subprocess.run([fish, "--no-config", "-n", str(FISH)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert fish_complete(FISH, "zcp --me") == {"--method"}
    assert fish_complete(FISH, "zcp --method ") == METHODS


# --- subcommands: the generator follows the CLI when it grows -----------------------------------


class Algo(enum.StrEnum):
    XXH3 = "xxh3"
    SHA256 = "sha256"


def _group_cli() -> types.ModuleType:
    """A module whose typer app has two commands, as `zcp hash` and `zcp check` would."""
    app = typer.Typer(add_completion=False, help="Hash or check trees.")

    @app.command(help="Print a hash per file.")
    def hash(paths: list[Path], algo: Annotated[Algo, typer.Option("--algo")] = Algo.XXH3) -> None:
        """Never called: the generator only reads the declaration."""

    @app.command(help="Compare two trees.")
    def check(a: Path, b: Path, quick: Annotated[bool, typer.Option("--quick")] = False) -> None:
        """Never called."""

    return types.SimpleNamespace(app=app)


def _registry_cli() -> types.ModuleType:
    """A single-command app plus another typer app registered by name in a module-level dict."""
    app, hash_app = typer.Typer(add_completion=False), typer.Typer(add_completion=False)

    @app.command()
    def copy(paths: list[Path], fast: Annotated[bool, typer.Option("--fast")] = False) -> None:
        """Copy."""

    @hash_app.command()
    def hash(paths: list[Path], algo: Annotated[Algo, typer.Option("--algo")] = Algo.XXH3) -> None:
        """Print a hash per file."""

    return types.SimpleNamespace(app=app, SUBCOMMANDS={"hash": hash_app})


def _render(module: types.ModuleType, tmp_path: Path) -> Path:
    """The outputs for a made-up CLI (zcp's own examples left out: they use zcp's options)."""
    cli = gendocs.describe_cli(module)
    outputs = {path: render(cli) for path, render in gendocs.OUTPUTS.items() if render is not gendocs.render_man}
    outputs["man/zcp.1"] = gendocs.render_man(cli, examples=())
    for path, text in outputs.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


def test_a_group_gets_per_command_completion(tmp_path: Path) -> None:
    out = _render(_group_cli(), tmp_path)
    bash = out / "completions" / "zcp.bash"
    assert bash_complete(bash, "zcp", "") == {"hash", "check"}  # a group takes no files of its own
    assert bash_complete(bash, "zcp", "hash", "--") == {"--algo", "--help"}
    assert bash_complete(bash, "zcp", "hash", "--algo", "") == {"xxh3", "sha256"}
    assert bash_complete(bash, "zcp", "check", "--q") == {"--quick"}
    assert fish_complete(out / "completions" / "zcp.fish", "zcp hash --al") == {"--algo"}


def test_a_registered_app_becomes_a_subcommand(tmp_path: Path) -> None:
    out = _render(_registry_cli(), tmp_path)
    (tmp_path / "hello.txt").touch()
    bash = out / "completions" / "zcp.bash"
    assert bash_complete(bash, "zcp", "h", cwd=tmp_path) == {"hash", "hello.txt"}
    assert bash_complete(bash, "zcp", "hash", "--algo", "s") == {"sha256"}
    assert bash_complete(bash, "zcp", "--f") == {"--fast"}


@pytest.mark.parametrize("make_cli", [_group_cli, _registry_cli])
def test_subcommand_outputs_are_valid(make_cli, tmp_path: Path) -> None:
    out = _render(make_cli(), tmp_path)
    groff, zsh, fish = need_tool("groff"), need_tool("zsh"), need_tool("fish")
    man = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(out / "man" / "zcp.1")],
                         capture_output=True, text=True)
    assert (man.returncode, man.stderr) == (0, "")
    assert "zcp hash" in (out / "man" / "zcp.1").read_text()
    for checker in ([zsh, "-n", str(out / "completions" / "_zcp")], [fish, "-n", str(out / "completions" / "zcp.fish")]):
        done = subprocess.run(checker, capture_output=True, text=True)
        assert (done.returncode, done.stderr) == (0, ""), checker
