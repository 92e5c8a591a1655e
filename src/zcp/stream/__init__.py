"""The pipe format: `zcp SRC -` writes a POSIX pax stream, `zcp - DEST` receives tar or raw bytes."""

from zcp.stream.reader import ReceiveStats, receive
from zcp.stream.writer import StreamStats, write_raw, write_stream

__all__ = ["ReceiveStats", "StreamStats", "receive", "write_raw", "write_stream"]
