import os


def test_xfs_and_tiny_tmpfs(xfs_dir, tiny_tmpfs):
    assert os.statvfs(xfs_dir).f_bsize > 0
    assert os.statvfs(tiny_tmpfs).f_blocks * os.statvfs(tiny_tmpfs).f_frsize <= 1 << 20
