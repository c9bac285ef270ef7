"""The hdfs-native Python wheel against a ringfs cluster.

Usage: python hdfs_native_check.py hdfs://HOST:PORT BLOCK_SIZE

Prints "PASS name" or "FAIL name: expected ..., saw ..." per check, then "DONE".
The Rust test (tests/interop_python.rs) asserts every expected check passed.
"""

import hashlib
import random
import sys
import time
import traceback

from hdfs_native import Client, WriteOptions

URL = sys.argv[1]
BLOCK = int(sys.argv[2])
ROOT = "/pyhdfs"
SIZES = [0, 1, 511, 512, 513, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + BLOCK // 2]


def data(length, seed):
    return random.Random(seed).randbytes(length)


def describe(expected, actual):
    if expected == actual:
        return "identical"
    common = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
    return "expected %d bytes (md5 %s), read %d bytes (md5 %s), first difference at %d" % (
        len(expected), hashlib.md5(expected).hexdigest(), len(actual), hashlib.md5(actual).hexdigest(), common)


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def check(name, body):
    start = time.monotonic()
    try:
        body()
        print("PASS %s (%d ms)" % (name, (time.monotonic() - start) * 1000), flush=True)
    except CheckFailed as e:
        print("FAIL %s: %s" % (name, e), flush=True)
    except Exception:
        print("FAIL %s: %s" % (name, traceback.format_exc().replace("\n", " | ")), flush=True)


client = Client(URL)
client.mkdirs(ROOT, 0o755, True)


def write_read(size):
    def body():
        path = "%s/size-%d" % (ROOT, size)
        expected = data(size, size)
        with client.create(path, WriteOptions(overwrite=True)) as writer:
            # In uneven pieces, so packets and chunks do not line up with the writes.
            offset = 0
            piece = 70001
            while offset < size:
                writer.write(expected[offset:offset + piece])
                offset += piece
        status = client.get_file_info(path)
        expect(status.length == size, "get_file_info length %d, saw %d" % (size, status.length))
        expect(not status.isdir, "a file, saw a directory")
        with client.read(path) as reader:
            actual = reader.read()
        expect(actual == expected, "read back: " + describe(expected, actual))
        if size > 10:
            with client.read(path) as reader:
                middle = reader.read_range(size // 2 - 5, 10)
            expect(middle == expected[size // 2 - 5:size // 2 + 5], "read_range in the middle: " + describe(
                expected[size // 2 - 5:size // 2 + 5], middle))
    return body


for size in SIZES:
    check("write_read_%d" % size, write_read(size))


def listing():
    client.mkdirs(ROOT + "/list/sub", 0o755, True)
    for name in ["b", "a", "c"]:
        with client.create(ROOT + "/list/" + name) as writer:
            writer.write(name.encode() * 3)
    entries = list(client.list_status(ROOT + "/list"))
    names = [e.path.rsplit("/", 1)[-1] for e in entries]
    expect(names == ["a", "b", "c", "sub"], "names a, b, c, sub in order, saw %r" % names)
    by_name = {e.path.rsplit("/", 1)[-1]: e for e in entries}
    expect(by_name["a"].length == 3 and not by_name["a"].isdir, "a: 3-byte file, saw %r" % vars_of(by_name["a"]))
    expect(by_name["sub"].isdir, "sub is a directory")
    expect(by_name["a"].permission == 0o644, "a has permission 644, saw %o" % by_name["a"].permission)
    expect(by_name["a"].replication == 3, "replication 3, saw %r" % by_name["a"].replication)
    expect(by_name["a"].blocksize == BLOCK, "block size %d, saw %r" % (BLOCK, by_name["a"].blocksize))
    recursive = sorted(e.path for e in client.list_status(ROOT + "/list", True))
    expect(recursive == [ROOT + "/list/" + n for n in ["a", "b", "c", "sub"]],
           "recursive listing of files and dirs, saw %r" % recursive)
    summary = client.get_content_summary(ROOT + "/list")
    expect(summary.file_count == 3 and summary.directory_count == 2 and summary.length == 9,
           "content summary 3 files, 2 dirs, 9 bytes; saw %d/%d/%d" % (
               summary.file_count, summary.directory_count, summary.length))


def vars_of(status):
    return {k: getattr(status, k) for k in ["path", "length", "isdir", "permission", "owner", "group"]}


def rename():
    src = ROOT + "/rename-src"
    dst = ROOT + "/rename-dst"
    content = data(BLOCK + 100, 5)
    with client.create(src, WriteOptions(overwrite=True)) as writer:
        writer.write(content)
    client.rename(src, dst)
    try:
        client.get_file_info(src)
        raise CheckFailed("the source still exists after rename")
    except FileNotFoundError:
        pass
    with client.read(dst) as reader:
        actual = reader.read()
    expect(actual == content, "renamed content: " + describe(content, actual))
    other = ROOT + "/rename-other"
    with client.create(other, WriteOptions(overwrite=True)) as writer:
        writer.write(b"x")
    try:
        client.rename(other, dst)
        raise CheckFailed("rename onto an existing file without overwrite succeeded")
    except CheckFailed:
        raise
    except Exception:
        pass
    client.rename(other, dst, overwrite=True)
    expect(client.get_file_info(dst).length == 1, "rename with overwrite replaced the target")


def delete():
    client.mkdirs(ROOT + "/del/d", 0o755, True)
    with client.create(ROOT + "/del/d/f") as writer:
        writer.write(b"data")
    try:
        client.delete(ROOT + "/del/d", False)
        raise CheckFailed("non-recursive delete of a non-empty directory succeeded")
    except CheckFailed:
        raise
    except Exception:
        pass
    expect(client.delete(ROOT + "/del/d/f") is True, "delete of a file returns True")
    expect(client.delete(ROOT + "/del", True) is True, "recursive delete returns True")
    expect(client.delete(ROOT + "/del", True) is False, "delete of a missing path returns False")
    try:
        client.get_file_info(ROOT + "/del")
        raise CheckFailed("deleted directory still exists")
    except FileNotFoundError:
        pass


def append():
    path = ROOT + "/append"
    first = data(BLOCK - 7, 8)
    second = data(300, 9)
    with client.create(path, WriteOptions(overwrite=True)) as writer:
        writer.write(first)
    with client.append(path) as writer:
        writer.write(second)
    with client.read(path) as reader:
        actual = reader.read()
    expect(actual == first + second, "appended content: " + describe(first + second, actual))


def missing():
    try:
        client.get_file_info(ROOT + "/no-such-file")
        raise CheckFailed("get_file_info of a missing path succeeded")
    except FileNotFoundError:
        pass
    try:
        client.read(ROOT + "/no-such-file")
        raise CheckFailed("read of a missing path succeeded")
    except FileNotFoundError:
        pass


check("listing", listing)
check("rename", rename)
check("delete", delete)
check("append", append)
check("missing_paths_raise_file_not_found", missing)
print("DONE", flush=True)
