import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.security.PrivilegedExceptionAction;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.BlockLocation;
import org.apache.hadoop.fs.ContentSummary;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileChecksum;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.fs.SafeModeAction;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.client.HdfsDataOutputStream;
import org.apache.hadoop.hdfs.protocol.DatanodeInfo;
import org.apache.hadoop.hdfs.protocol.HdfsConstants.DatanodeReportType;
import org.apache.hadoop.security.AccessControlException;
import org.apache.hadoop.security.UserGroupInformation;

/**
 * The Java DistributedFileSystem API against a ringfs cluster. Prints one line per check:
 * "PASS name" or "FAIL name: what was expected, what was seen" (the Rust test asserts that
 * every expected check printed PASS), then "DONE".
 *
 * Usage: DfsApiTest hdfs://HOST:PORT BLOCK_SIZE DATANODES
 */
public class DfsApiTest {
    private static URI uri;
    private static long blockSize;
    private static int datanodes;
    private static int failures = 0;

    interface Check {
        void run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        uri = URI.create(args[0]);
        blockSize = Long.parseLong(args[1]);
        datanodes = Integer.parseInt(args[2]);
        DistributedFileSystem fs = newFs();
        fs.mkdirs(new Path("/api"), new FsPermission((short) 0755));

        check("filesystem_is_hdfs", () -> expect(fs.getScheme().equals("hdfs"), "scheme hdfs, saw " + fs.getScheme()));
        check("create_write_read_multiblock", () -> createWriteRead(fs));
        check("positional_read_across_blocks", () -> positionalRead(fs));
        check("block_locations", () -> blockLocations(fs));
        check("hflush_visible_to_second_client", () -> hflushVisible(fs));
        check("hsync", () -> hsync(fs));
        check("append", () -> append(fs));
        check("concat", () -> concat(fs));
        check("list_status_10000", () -> listStatus10000(fs));
        check("file_checksum_equal_for_equal_contents", () -> checksums(fs));
        check("datanode_stats", () -> datanodeStats(fs));
        check("safe_mode_enter_leave", () -> safeMode(fs));
        check("permission_denied_for_other_user", () -> permissionDenied(fs));
        check("rename_delete_content_summary", () -> renameDelete(fs));
        check("set_times_owner_permission", () -> attributes(fs));

        fs.close();
        System.out.println("DONE failures=" + failures);
        System.exit(0);
    }

    static DistributedFileSystem newFs() throws IOException {
        Configuration conf = new Configuration();
        conf.setLong("dfs.blocksize", blockSize);
        conf.setInt("dfs.replication", 3);
        // A new instance, never the cache: several tests need independent clients.
        return (DistributedFileSystem) FileSystem.newInstance(uri, conf);
    }

    static void check(String name, Check body) {
        long start = System.nanoTime();
        try {
            body.run();
            System.out.printf("PASS %s (%d ms)%n", name, (System.nanoTime() - start) / 1_000_000);
        } catch (Throwable t) {
            failures++;
            StringWriter trace = new StringWriter();
            t.printStackTrace(new PrintWriter(trace));
            String oneLine = trace.toString().replace("\n", " | ").replace("\t", "");
            if (oneLine.length() > 3000) {
                oneLine = oneLine.substring(0, 3000) + " ...";
            }
            System.out.printf("FAIL %s: %s%n", name, oneLine);
        }
        System.out.flush();
    }

    static void expect(boolean condition, String message) {
        if (!condition) {
            throw new AssertionError(message);
        }
    }

    static byte[] data(int length, long seed) {
        byte[] bytes = new byte[length];
        new Random(seed).nextBytes(bytes);
        return bytes;
    }

    static void write(FileSystem fs, Path path, byte[] bytes) throws IOException {
        try (FSDataOutputStream out = fs.create(path, true)) {
            out.write(bytes);
        }
    }

    static byte[] readAll(FileSystem fs, Path path) throws IOException {
        try (InputStream in = fs.open(path)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buffer = new byte[65536];
            int n;
            while ((n = in.read(buffer)) > 0) {
                out.write(buffer, 0, n);
            }
            return out.toByteArray();
        }
    }

    static void expectContent(byte[] expected, byte[] actual, String what) {
        if (Arrays.equals(expected, actual)) {
            return;
        }
        int i = 0;
        while (i < Math.min(expected.length, actual.length) && expected[i] == actual[i]) {
            i++;
        }
        throw new AssertionError(what + ": expected " + expected.length + " bytes, read " + actual.length
                + " bytes; first difference at offset " + i);
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] part : parts) {
            out.write(part, 0, part.length);
        }
        return out.toByteArray();
    }

    static void createWriteRead(DistributedFileSystem fs) throws Exception {
        for (int length : new int[] {0, 1, 511, 512, 513, (int) blockSize - 1, (int) blockSize, (int) blockSize + 1,
                (int) (3 * blockSize + blockSize / 2)}) {
            Path path = new Path("/api/sizes/f" + length);
            byte[] bytes = data(length, length);
            write(fs, path, bytes);
            FileStatus status = fs.getFileStatus(path);
            expect(status.getLen() == length, "length " + length + " after close, getFileStatus says " + status.getLen());
            expect(status.getBlockSize() == blockSize, "block size " + blockSize + ", saw " + status.getBlockSize());
            expect(status.getReplication() == 3, "replication 3, saw " + status.getReplication());
            expectContent(bytes, readAll(fs, path), "read back " + path);
        }
    }

    static void positionalRead(DistributedFileSystem fs) throws Exception {
        Path path = new Path("/api/pread.bin");
        byte[] bytes = data((int) (2 * blockSize + 1000), 7);
        write(fs, path, bytes);
        try (FSDataInputStream in = fs.open(path)) {
            for (long offset : new long[] {0, blockSize - 10, blockSize, 2 * blockSize - 1, 2 * blockSize + 900}) {
                byte[] buffer = new byte[100];
                in.readFully(offset, buffer);
                expectContent(Arrays.copyOfRange(bytes, (int) offset, (int) offset + 100), buffer, "pread at " + offset);
            }
            in.seek(blockSize + 5);
            byte[] buffer = new byte[(int) blockSize];
            in.readFully(buffer);
            expectContent(Arrays.copyOfRange(bytes, (int) blockSize + 5, (int) (2 * blockSize + 5)), buffer,
                    "seek + read across the block boundary");
        }
    }

    static void blockLocations(DistributedFileSystem fs) throws Exception {
        Path path = new Path("/api/locations.bin");
        write(fs, path, data((int) (2 * blockSize + 10), 8));
        BlockLocation[] blocks = fs.getFileBlockLocations(path, 0, Long.MAX_VALUE);
        expect(blocks.length == 3, "3 blocks, saw " + blocks.length);
        for (int i = 0; i < blocks.length; i++) {
            expect(blocks[i].getOffset() == i * blockSize, "block " + i + " at offset " + i * blockSize + ", saw "
                    + blocks[i].getOffset());
            expect(blocks[i].getHosts().length == Math.min(3, datanodes), "block " + i + " on " + Math.min(3, datanodes)
                    + " hosts, saw " + Arrays.toString(blocks[i].getNames()));
        }
        expect(blocks[2].getLength() == 10, "last block of 10 bytes, saw " + blocks[2].getLength());
    }

    static void hflushVisible(DistributedFileSystem fs) throws Exception {
        Path path = new Path("/api/hflush.bin");
        byte[] first = data(1000, 11);
        byte[] second = data((int) blockSize, 12);
        DistributedFileSystem reader = newFs();
        try (FSDataOutputStream out = fs.create(path, true)) {
            out.write(first);
            out.hflush();
            expectContent(first, readAll(reader, path), "second client reading after hflush of 1000 bytes");
            out.write(second);
            out.hflush();
            expectContent(concat(first, second), readAll(reader, path),
                    "second client reading after hflush across a block boundary");
            expect(!reader.isFileClosed(path), "isFileClosed false while the writer is open");
        }
        expect(reader.isFileClosed(path), "isFileClosed true after close");
        expectContent(concat(first, second), readAll(reader, path), "second client after close");
        reader.close();
    }

    static void hsync(DistributedFileSystem fs) throws Exception {
        Path path = new Path("/api/hsync.bin");
        byte[] first = data(4096, 13);
        try (FSDataOutputStream out = fs.create(path, true)) {
            out.write(first);
            out.hsync();
            out.write(first);
            ((HdfsDataOutputStream) out).hsync(EnumSet.of(HdfsDataOutputStream.SyncFlag.UPDATE_LENGTH));
            long length = fs.getFileStatus(path).getLen();
            expect(length == 8192, "hsync(UPDATE_LENGTH) makes the namenode report 8192 bytes, saw " + length);
        }
        expectContent(concat(first, first), readAll(fs, path), "content after hsync and close");
    }

    static void append(DistributedFileSystem fs) throws Exception {
        // Partial last block, full last block, and an append that crosses a block boundary.
        int[][] cases = {{1000, 500}, {(int) blockSize, 700}, {(int) blockSize - 10, 100}, {0, 1234}};
        for (int[] c : cases) {
            Path path = new Path("/api/append-" + c[0] + "-" + c[1]);
            byte[] head = data(c[0], c[0] + 1);
            byte[] tail = data(c[1], c[1] + 2);
            write(fs, path, head);
            try (FSDataOutputStream out = fs.append(path)) {
                out.write(tail);
            }
            expectContent(concat(head, tail), readAll(fs, path), "append of " + c[1] + " bytes to " + c[0] + " bytes");
        }
        Path twice = new Path("/api/append-twice");
        write(fs, twice, data(10, 1));
        for (int i = 0; i < 2; i++) {
            try (FSDataOutputStream out = fs.append(twice)) {
                out.write(data(10, 1));
            }
        }
        expect(fs.getFileStatus(twice).getLen() == 30, "30 bytes after two appends, saw " + fs.getFileStatus(twice).getLen());
    }

    static void concat(DistributedFileSystem fs) throws Exception {
        Path target = new Path("/api/concat/target");
        Path[] sources = {new Path("/api/concat/s1"), new Path("/api/concat/s2")};
        byte[] t = data((int) blockSize, 21);
        byte[] s1 = data((int) blockSize, 22);
        byte[] s2 = data(5000, 23);
        write(fs, target, t);
        write(fs, sources[0], s1);
        write(fs, sources[1], s2);
        fs.concat(target, sources);
        expectContent(concat(t, s1, s2), readAll(fs, target), "target after concat");
        expect(!fs.exists(sources[0]) && !fs.exists(sources[1]), "sources removed by concat");
        expect(fs.getFileBlockLocations(target, 0, Long.MAX_VALUE).length == 3, "3 blocks after concat");
    }

    static void listStatus10000(DistributedFileSystem fs) throws Exception {
        Path dir = new Path("/api/many");
        fs.mkdirs(dir);
        int count = 10_000;
        ExecutorService pool = Executors.newFixedThreadPool(8);
        List<Future<?>> futures = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            final int thread = t;
            futures.add(pool.submit(() -> {
                for (int i = thread; i < count; i += 8) {
                    fs.create(new Path(dir, String.format("f%05d", i)), true).close();
                }
                return null;
            }));
        }
        for (Future<?> f : futures) {
            f.get();
        }
        pool.shutdown();
        FileStatus[] entries = fs.listStatus(dir);
        expect(entries.length == count, "listStatus returns " + count + " entries, saw " + entries.length);
        for (int i = 0; i < count; i++) {
            String name = entries[i].getPath().getName();
            expect(name.equals(String.format("f%05d", i)), "entry " + i + " is f" + String.format("%05d", i)
                    + " (sorted), saw " + name);
        }
        int iterated = 0;
        RemoteIterator<FileStatus> it = fs.listStatusIterator(dir);
        while (it.hasNext()) {
            it.next();
            iterated++;
        }
        expect(iterated == count, "listStatusIterator yields " + count + ", saw " + iterated);
        ContentSummary summary = fs.getContentSummary(dir);
        expect(summary.getFileCount() == count, "content summary counts " + count + " files, saw "
                + summary.getFileCount());
    }

    static void checksums(DistributedFileSystem fs) throws Exception {
        byte[] bytes = data((int) (2 * blockSize + 4321), 31);
        byte[] different = bytes.clone();
        different[(int) blockSize + 17] ^= 1;
        write(fs, new Path("/api/sum-a"), bytes);
        write(fs, new Path("/api/sum-b"), bytes);
        write(fs, new Path("/api/sum-c"), different);
        FileChecksum a = fs.getFileChecksum(new Path("/api/sum-a"));
        FileChecksum b = fs.getFileChecksum(new Path("/api/sum-b"));
        FileChecksum c = fs.getFileChecksum(new Path("/api/sum-c"));
        expect(a != null, "a checksum for an HDFS file");
        expect(a.equals(b), "equal contents give equal checksums: " + a + " vs " + b);
        expect(!a.equals(c), "a flipped bit gives a different checksum: " + a + " vs " + c);
        expect(a.getAlgorithmName().equals("MD5-of-" + (blockSize / 512) + "MD5-of-512CRC32C"),
                "algorithm MD5-of-" + (blockSize / 512) + "MD5-of-512CRC32C, saw " + a.getAlgorithmName());
        System.out.println("INFO checksum /api/sum-a " + a.getAlgorithmName() + " "
                + org.apache.hadoop.util.StringUtils.byteToHexString(a.getBytes()));
    }

    static void datanodeStats(DistributedFileSystem fs) throws Exception {
        DatanodeInfo[] all = fs.getDataNodeStats();
        expect(all.length == datanodes, datanodes + " datanodes, saw " + all.length);
        DatanodeInfo[] live = fs.getDataNodeStats(DatanodeReportType.LIVE);
        expect(live.length == datanodes, datanodes + " live datanodes, saw " + live.length);
        DatanodeInfo[] dead = fs.getDataNodeStats(DatanodeReportType.DEAD);
        expect(dead.length == 0, "no dead datanodes, saw " + dead.length);
        for (DatanodeInfo node : all) {
            expect(node.getIpAddr().equals("127.0.0.1"), "datanode on 127.0.0.1, saw " + node.getIpAddr());
            expect(node.getXferPort() > 0 && node.getIpcPort() > 0, "ports set: " + node.getXferAddr());
            expect(!node.getDatanodeUuid().isEmpty(), "a datanode uuid");
            expect(node.getCapacity() > 0, "capacity > 0 for " + node.getXferAddr() + ", saw " + node.getCapacity());
            expect(node.getRemaining() > 0, "remaining > 0 for " + node.getXferAddr());
            expect(node.getDfsUsed() >= 0, "dfsUsed >= 0");
        }
        org.apache.hadoop.fs.FsStatus status = fs.getStatus();
        expect(status.getCapacity() > 0, "getStatus capacity > 0, saw " + status.getCapacity());
        expect(status.getRemaining() > 0, "getStatus remaining > 0, saw " + status.getRemaining());
    }

    static void safeMode(DistributedFileSystem fs) throws Exception {
        expect(!fs.setSafeMode(SafeModeAction.GET), "not in safe mode at the start");
        expect(fs.setSafeMode(SafeModeAction.ENTER), "ENTER returns true (in safe mode)");
        expect(fs.setSafeMode(SafeModeAction.GET), "GET returns true while in safe mode");
        try {
            try {
                fs.mkdirs(new Path("/api/in-safe-mode"));
                throw new AssertionError("mkdirs succeeded in safe mode");
            } catch (IOException e) {
                expect(e.getClass().getName().contains("SafeModeException")
                        || String.valueOf(e.getMessage()).contains("safe mode"),
                        "a SafeModeException, saw " + e);
            }
            expect(fs.exists(new Path("/api")), "reads work in safe mode");
        } finally {
            expect(!fs.setSafeMode(SafeModeAction.LEAVE), "LEAVE returns false (out of safe mode)");
        }
        expect(!fs.setSafeMode(SafeModeAction.GET), "GET returns false after LEAVE");
        expect(fs.mkdirs(new Path("/api/after-safe-mode")), "mkdirs works after LEAVE");
    }

    static void permissionDenied(DistributedFileSystem fs) throws Exception {
        Path closed = new Path("/api/closed");
        fs.mkdirs(closed, new FsPermission((short) 0755));
        fs.setPermission(closed, new FsPermission((short) 0755));
        Path secret = new Path("/api/secret.txt");
        write(fs, secret, "secret".getBytes("UTF-8"));
        fs.setPermission(secret, new FsPermission((short) 0600));
        Path mallorysDir = new Path("/api/mallory");
        fs.mkdirs(mallorysDir);
        fs.setOwner(mallorysDir, "mallory", null);

        UserGroupInformation mallory = UserGroupInformation.createRemoteUser("mallory");
        mallory.doAs((PrivilegedExceptionAction<Void>) () -> {
            DistributedFileSystem asMallory = newFs();
            try {
                expectDenied("create in a directory mallory may not write",
                        () -> asMallory.create(new Path(closed, "x")).close(), "access=WRITE");
                expectDenied("mkdirs in a directory mallory may not write",
                        () -> asMallory.mkdirs(new Path(closed, "sub")), "access=WRITE");
                expectDenied("read of a 0600 file", () -> readAll(asMallory, secret), "access=READ");
                expectDenied("delete in /api", () -> asMallory.delete(secret, false), "access=WRITE");
                expectDenied("setPermission of someone else's file",
                        () -> asMallory.setPermission(secret, new FsPermission((short) 0777)), null);
                write(asMallory, new Path(mallorysDir, "mine.txt"), "ok".getBytes("UTF-8"));
                FileStatus mine = asMallory.getFileStatus(new Path(mallorysDir, "mine.txt"));
                expect(mine.getOwner().equals("mallory"), "mallory owns what she creates, saw " + mine.getOwner());
            } finally {
                asMallory.close();
            }
            return null;
        });
        expect(!fs.exists(new Path(closed, "x")), "the denied create left nothing behind");
        expectContent("secret".getBytes("UTF-8"), readAll(fs, secret), "the owner still reads the file");
    }

    static void expectDenied(String what, Check body, String messagePart) throws Exception {
        try {
            body.run();
        } catch (AccessControlException e) {
            String message = String.valueOf(e.getMessage());
            expect(message.contains("Permission denied") || message.contains("mallory"),
                    what + ": message names the denial, saw " + message);
            expect(messagePart == null || message.contains(messagePart),
                    what + ": message contains " + messagePart + ", saw " + message);
            return;
        }
        throw new AssertionError(what + ": expected AccessControlException, the call succeeded");
    }

    static void renameDelete(DistributedFileSystem fs) throws Exception {
        Path dir = new Path("/api/rename");
        fs.mkdirs(dir);
        write(fs, new Path(dir, "a"), data(100, 41));
        expect(fs.rename(new Path(dir, "a"), new Path(dir, "b")), "rename a -> b");
        expect(!fs.exists(new Path(dir, "a")) && fs.exists(new Path(dir, "b")), "a gone, b present");
        expect(!fs.rename(new Path(dir, "missing"), new Path(dir, "c")), "rename of a missing file returns false");
        fs.mkdirs(new Path(dir, "sub"));
        expect(fs.rename(new Path(dir, "b"), new Path(dir, "sub")), "rename into an existing directory");
        expect(fs.exists(new Path(dir, "sub/b")), "moved into sub/b");
        ContentSummary summary = fs.getContentSummary(dir);
        expect(summary.getLength() == 100 && summary.getFileCount() == 1 && summary.getDirectoryCount() == 2,
                "content summary 100 bytes, 1 file, 2 dirs; saw " + summary);
        expect(summary.getSpaceConsumed() == 300, "space consumed 300 (x3), saw " + summary.getSpaceConsumed());
        try {
            fs.delete(dir, false);
            throw new AssertionError("non-recursive delete of a non-empty directory succeeded");
        } catch (IOException e) {
            expect(String.valueOf(e.getMessage()).contains("is non empty") || e.getClass().getName().contains("PathIsNotEmpty"),
                    "PathIsNotEmptyDirectoryException, saw " + e);
        }
        expect(fs.delete(dir, true), "recursive delete");
        expect(!fs.exists(dir), "deleted");
        expect(!fs.delete(dir, true), "delete of a missing path returns false");
    }

    static void attributes(DistributedFileSystem fs) throws Exception {
        Path path = new Path("/api/attrs.txt");
        write(fs, path, data(10, 51));
        fs.setTimes(path, 1_000_000_000_000L, 1_100_000_000_000L);
        FileStatus status = fs.getFileStatus(path);
        expect(status.getModificationTime() == 1_000_000_000_000L, "mtime set, saw " + status.getModificationTime());
        expect(status.getAccessTime() == 1_100_000_000_000L, "atime set, saw " + status.getAccessTime());
        fs.setTimes(path, -1, 1_200_000_000_000L);
        status = fs.getFileStatus(path);
        expect(status.getModificationTime() == 1_000_000_000_000L, "mtime -1 leaves it, saw " + status.getModificationTime());
        expect(status.getAccessTime() == 1_200_000_000_000L, "atime changed, saw " + status.getAccessTime());
        fs.setPermission(path, new FsPermission((short) 0640));
        fs.setOwner(path, "alice", "staff");
        status = fs.getFileStatus(path);
        expect(status.getPermission().toShort() == 0640, "permission 640, saw " + status.getPermission());
        expect(status.getOwner().equals("alice") && status.getGroup().equals("staff"),
                "owner alice:staff, saw " + status.getOwner() + ":" + status.getGroup());
        expect(fs.setReplication(path, (short) 2), "setReplication returns true");
        expect(fs.getFileStatus(path).getReplication() == 2, "replication 2");
    }
}
