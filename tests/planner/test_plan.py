"""Planner logic on a fake filesystem: naming rules, pairing, decisions. Nothing here writes."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zcp.config import Compare, Config, Method, Preserve, Reflink
from zcp.errors import UsageError
from zcp.model import Entry, Kind, Landing, Op, Unchanged
from zcp.planner.choose import choose_methods
from zcp.planner.decide import Decider, unchanged_test
from zcp.planner.operands import resolve
from zcp.planner.plan import Planner

ARCHIVE = Config(recursive=True, preserve=Preserve.archive())


def plan_all(config: Config, sources: list[str], dest: str, errors: list | None = None):
    operands = resolve(sources, dest, recursive=config.recursive, keep_links=config.preserve.links)
    planner = Planner(config, lambda p, e: (errors if errors is not None else []).append(p), is_root=True)
    return [a for t in operands.transfers for a in planner.plan(t)] + list(planner.later())


@pytest.fixture
def tree(fs):
    fs.create_file("/src/a.txt", contents="aaa")
    fs.create_file("/src/sub/b.bin", contents="b" * 100)
    fs.create_dir("/src/empty")
    fs.create_symlink("/src/link", "a.txt")
    fs.create_dir("/dst")
    return fs


def test_trailing_slash_copies_contents(tree):
    actions = plan_all(ARCHIVE, ["/src/"], "/dst")
    assert [a.dst for a in actions] == ["/dst", "/dst/a.txt", "/dst/empty", "/dst/link", "/dst/sub", "/dst/sub/b.bin"]


def test_no_slash_copies_the_folder_into_an_existing_folder(tree):
    actions = plan_all(ARCHIVE, ["/src"], "/dst")
    assert actions[0].dst == "/dst/src" and actions[1].dst == "/dst/src/a.txt"


def test_missing_destination_becomes_the_copy(tree):
    actions = plan_all(ARCHIVE, ["/src"], "/new")
    assert actions[0].dst == "/new" and actions[0].op is Op.MKDIR


def test_trailing_slash_destination_is_a_folder_target(tree):
    actions = plan_all(Config(), ["/src/a.txt"], "/new/")
    assert actions[0].dst == "/new/a.txt"
    assert resolve(["/src/a.txt"], "/new/", recursive=False, keep_links=False).create_folder == "/new/"


def test_walk_is_sorted_pre_order_with_rel_paths(tree):
    rels = [a.rel for a in plan_all(ARCHIVE, ["/src/"], "/dst")]
    assert rels == ["", "a.txt", "empty", "link", "sub", "sub/b.bin"]


def test_new_files_copy_and_symlinks_keep_their_text(tree):
    by_rel = {a.rel: a for a in plan_all(ARCHIVE, ["/src/"], "/dst")}
    assert by_rel["a.txt"].op is Op.COPY and by_rel["a.txt"].methods
    assert by_rel["link"].op is Op.SYMLINK and by_rel["link"].target == "a.txt"


def test_unchanged_file_is_skipped_and_changed_one_updated(tree):
    st = os.stat("/src/a.txt")
    tree.create_file("/dst/a.txt", contents="aaa")
    os.utime("/dst/a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    tree.create_file("/dst/sub/b.bin", contents="different")
    by_rel = {a.rel: a for a in plan_all(ARCHIVE, ["/src/"], "/dst")}
    assert by_rel["a.txt"].op is Op.SKIP
    assert by_rel["sub/b.bin"].op is Op.UPDATE and by_rel["sub/b.bin"].existing.size == 9


def test_same_symlink_is_skipped_and_a_new_time_is_set(tree):
    tree.create_symlink("/dst/link", "a.txt")
    st = os.lstat("/src/link")
    os.utime("/dst/link", ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    assert {a.rel: a for a in plan_all(ARCHIVE, ["/src/"], "/dst")}["link"].op is Op.SKIP
    os.utime("/dst/link", ns=(1, 1), follow_symlinks=False)
    assert {a.rel: a for a in plan_all(ARCHIVE, ["/src/"], "/dst")}["link"].op is Op.ATTRS


def test_hard_link_group_copies_once_then_links(fs):
    fs.create_file("/src/one", contents="x")
    os.link("/src/one", "/src/two")
    by_rel = {a.rel: a for a in plan_all(ARCHIVE, ["/src/"], "/dst")}
    assert by_rel["one"].op is Op.COPY
    assert by_rel["two"].op is Op.HARDLINK and by_rel["two"].link_to == "/dst/one"


def test_hard_links_without_H_are_two_copies(fs):
    fs.create_file("/src/one", contents="x")
    os.link("/src/one", "/src/two")
    cfg = Config(recursive=True)
    assert [a.op for a in plan_all(cfg, ["/src/"], "/dst")][1:] == [Op.COPY, Op.COPY]


def test_fifo_is_skipped_with_a_warning_without_archive(fs):
    fs.create_file("/src/pipe", st_mode=stat.S_IFIFO | 0o644)
    actions = plan_all(Config(recursive=True), ["/src/"], "/dst")
    assert actions[1].op is Op.SKIP and "pipe" in actions[1].warning


def test_folder_without_recursive_is_refused(tree):
    with pytest.raises(UsageError, match="-r"):
        plan_all(Config(), ["/src"], "/dst")


@pytest.mark.parametrize(
    ("sources", "dest", "message"),
    [
        (["/nope"], "/dst", "cannot read"),
        (["/src/a.txt"], "/src/a.txt", "same file"),
        (["/src/"], "/src", "same file"),
        (["/src"], "/src/sub", "into itself"),
        (["/src/a.txt"], "/missing/parent/x", "does not exist"),
        (["/src/a.txt", "/src/sub"], "/src/a.txt", "not a folder"),
    ],
)
def test_impossible_operands_fail_before_planning(tree, sources, dest, message):
    with pytest.raises(UsageError, match=message):
        plan_all(ARCHIVE, sources, dest)


def test_unreadable_entries_are_reported_not_fatal(tree, monkeypatch):
    errors: list[str] = []
    real = os.scandir

    def scandir(path):
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rels = [a.rel for a in plan_all(ARCHIVE, ["/src/"], "/dst", errors)]
    assert "sub" in rels and "sub/b.bin" not in rels
    assert errors == ["/src/sub"]


def test_kinds_come_from_lstat(tree):
    kinds = {a.rel: a.src.kind for a in plan_all(ARCHIVE, ["/src/"], "/dst")}
    assert kinds == {"": Kind.DIR, "a.txt": Kind.FILE, "empty": Kind.DIR, "link": Kind.SYMLINK,
                     "sub": Kind.DIR, "sub/b.bin": Kind.FILE}


@pytest.mark.parametrize(
    ("method", "reflink", "same_fs", "expected"),
    [
        (Method.AUTO, Reflink.AUTO, True, (Method.REFLINK, Method.COPY_FILE_RANGE, Method.SENDFILE, Method.RW)),
        (Method.AUTO, Reflink.AUTO, False, (Method.COPY_FILE_RANGE, Method.SENDFILE, Method.RW)),
        (Method.AUTO, Reflink.NEVER, True, (Method.SENDFILE, Method.RW)),
        (Method.AUTO, Reflink.ALWAYS, False, (Method.REFLINK,)),
        (Method.SPLICE, Reflink.AUTO, True, (Method.SPLICE,)),
    ],
)
def test_method_choice(method, reflink, same_fs, expected):
    methods, reason = choose_methods(method, reflink, same_fs)
    assert methods == expected and reason


_STAT_FIELDS = st.fixed_dictionaries({
    "kind": st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK]),
    "perms": st.sampled_from([0o644, 0o600, 0o4755]),
    "size": st.sampled_from([0, 3, 4096]),
    "mtime_ns": st.sampled_from([10**18, 10**18 + 1, 10**18 + 10**9]),
    "uid": st.sampled_from([0, 1000]),
    "gid": st.sampled_from([0, 1000]),
    "nlink": st.sampled_from([1, 2]),
    "ctime_ns": st.sampled_from([10**18, 10**18 + 5]),
})


def _stat(f: dict) -> os.stat_result:
    at = 10**18
    return os.stat_result((f["kind"] | f["perms"], 7, 1, f["nlink"], f["uid"], f["gid"], f["size"],
                           at // 10**9, f["mtime_ns"] // 10**9, 0, float(at // 10**9), f["mtime_ns"] / 1e9, 0.0,
                           at, f["mtime_ns"], f["ctime_ns"]))


@settings(max_examples=400, deadline=None)
@given(src=_STAT_FIELDS, dst=_STAT_FIELDS, mode=st.booleans(), times=st.booleans(), owner=st.booleans(),
       hard_links=st.booleans(), update=st.booleans(), is_root=st.booleans(), xattrs=st.booleans())
def test_the_unchanged_test_on_lstat_results_says_what_the_decider_says(src, dst, mode, times, owner, hard_links,
                                                                          update, is_root, xattrs):
    """The planner counts a file as unchanged from two lstat results alone, without the Entries, the
    decision and the Action: exactly when the full decision is SKIP 'up to date' for a plain file,
    and with -X only where the planner would not compare xattrs (the source changed no metadata
    since the copy did)."""
    config = Config(recursive=True, update=update, preserve=Preserve(mode=mode, times=times, owner=owner, links=True,
                                                                     hard_links=hard_links, xattrs=xattrs))
    unchanged = unchanged_test(config, is_root)
    a, b = _stat(src), _stat(dst)
    src_entry, dst_entry = Entry.from_stat("/s/f", a), Entry.from_stat("/d/f", b)
    action = Decider(config, is_root).decide("f", src_entry, "/d/f", dst_entry, Landing(1, False, False))
    plain = src_entry.kind is Kind.FILE and (src_entry.nlink == 1 or not hard_links)
    xattrs_looked_at = xattrs and src["ctime_ns"] >= dst["ctime_ns"]
    assert unchanged(a, b) == (plain and not xattrs_looked_at and action.op is Op.SKIP and action.reason == "up to date")


@pytest.mark.parametrize("config", [Config(compare=Compare.CHECKSUM), Config(compare=Compare.SIZE_ONLY),
                                    Config(ignore_existing=True)])
def test_other_comparisons_are_never_counted_unchanged(config):
    assert unchanged_test(config, is_root=True) is None


def test_a_planner_that_counts_unchanged_files_plans_them_as_counts(tree):
    st_a = os.stat("/src/a.txt")
    tree.create_file("/dst/a.txt", contents="aaa")
    os.utime("/dst/a.txt", ns=(st_a.st_atime_ns, st_a.st_mtime_ns))
    os.chmod("/dst/a.txt", stat.S_IMODE(st_a.st_mode))
    operands = resolve(["/src/"], "/dst", recursive=True, keep_links=True)
    planner = Planner(ARCHIVE, lambda p, e: None, is_root=True, count_unchanged=True)
    planned = [step for t in operands.transfers for step in planner.plan(t)]
    assert Unchanged(1) in planned
    assert "a.txt" not in {step.rel for step in planned if type(step) is not Unchanged}


def test_unchanged_files_of_a_big_folder_are_passed_on_in_batches(fs):
    """Progress totals grow during a long listing, not only when it ends."""
    from zcp.planner import plan

    count = 2 * plan.COUNT_BATCH + 7
    for i in range(count):
        for root in ("/src", "/dst"):
            fs.create_file(f"{root}/f{i:04d}", contents="x")
            os.utime(f"{root}/f{i:04d}", ns=(10**18, 10**18))
    operands = resolve(["/src/"], "/dst", recursive=True, keep_links=True)
    planner = Planner(ARCHIVE, lambda p, e: None, is_root=True, count_unchanged=True)
    counts = [step.count for t in operands.transfers for step in planner.plan(t) if type(step) is Unchanged]
    assert counts == [plan.COUNT_BATCH, plan.COUNT_BATCH, 7]
