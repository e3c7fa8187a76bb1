#!/usr/bin/env python3
"""Counts the pages the SQLite log (-wal) carries, by the table or index
each belongs to: what each commit writes, and so what its `fsync` and the
checkpoint after it cost.

    python3 bench/walpages.py /tmp/endusers-bench-XXXX/bench.db

Run it while the bench loads the server (the bench's database lives in a
temporary directory for the length of the run; a webhook scenario is the
one to watch). It copies the database and its log first, so the server
goes on undisturbed; a commit caught half written at the log's end is
left out. It needs Python's sqlite3 built with the dbstat table, as
Debian's is.
"""

import collections
import shutil
import sqlite3
import struct
import sys
import tempfile

WAL_HEADER = 32
FRAME_HEADER = 24


def frames(wal):
    """(page number, commit) of each valid frame since the log started over."""
    magic, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">IIIIIIII", wal[:WAL_HEADER])
    if magic not in (0x377F0682, 0x377F0683):
        sys.exit("not a SQLite log")
    found, offset = [], WAL_HEADER
    while offset + FRAME_HEADER + page_size <= len(wal):
        page, size_after_commit, s1, s2 = struct.unpack(">IIII", wal[offset:offset + 16])
        if (s1, s2) != (salt1, salt2):
            break
        found.append((page, size_after_commit != 0))
        offset += FRAME_HEADER + page_size
    # Frames after the last commit belong to a transaction not finished.
    while found and not found[-1][1]:
        found.pop()
    return found


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    db = sys.argv[1]
    copy = tempfile.mkdtemp() + "/copy.db"
    shutil.copy(db + "-wal", copy + "-wal")
    shutil.copy(db, copy)
    with open(copy + "-wal", "rb") as f:
        logged = frames(f.read())
    # Opened with its log, the copy maps every page as of the last commit.
    conn = sqlite3.connect(copy)
    owner = dict((page, name) for name, page in conn.execute("SELECT name, pageno FROM dbstat"))
    owner[1] = "page 1 (the database header)"
    commits = sum(1 for _, commit in logged if commit)
    if not commits:
        sys.exit("no commit in the log yet")
    counts = collections.Counter(owner.get(page, "free") for page, _ in logged)
    print(f"{len(logged)} pages in {commits} commits: {len(logged) / commits:.1f} a commit")
    for name, n in counts.most_common():
        print(f"  {n / commits:6.2f} a commit  {name}")


if __name__ == "__main__":
    main()
