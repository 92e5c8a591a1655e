"""zcp's benchmark harness: zcp against cp, rsync, tar, pv and shutil (run: python -m bench)."""
