import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.PrivilegedExceptionAction;
import java.util.Arrays;
import java.util.List;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.FsShell;
import org.apache.hadoop.security.UserGroupInformation;
import org.apache.hadoop.util.ToolRunner;

/**
 * Runs many `hadoop fs` commands in one JVM, exactly as FsShell.main runs one: a fresh
 * Configuration and FsShell per command, ToolRunner for the generic options, and every
 * cached FileSystem closed afterwards so each command starts with a new DFSClient.
 *
 * Usage: FsShellBatch SCRIPT OUTDIR
 *   SCRIPT: one command per line, fields separated by TAB:
 *           STDIN_FILE (empty: no input) TAB USER (empty: the login user) TAB ARG TAB ARG ...
 *   OUTDIR: receives N.out, N.err and N.rc (exit code) for the N-th command (from 0).
 *
 * A JVM start costs about a second; the interop suite runs a hundred commands.
 */
public class FsShellBatch {
    public static void main(String[] args) throws Exception {
        List<String> lines = Files.readAllLines(Paths.get(args[0]), StandardCharsets.UTF_8);
        Path outDir = Paths.get(args[1]);
        Files.createDirectories(outDir);
        PrintStream realOut = System.out;
        PrintStream realErr = System.err;
        InputStream realIn = System.in;
        int index = 0;
        for (String line : lines) {
            if (line.isEmpty()) {
                continue;
            }
            String[] fields = line.split("\t", -1);
            String stdinFile = fields[0];
            String user = fields[1];
            String[] argv = Arrays.copyOfRange(fields, 2, fields.length);
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            int rc;
            try (PrintStream shellOut = new PrintStream(out, true, "UTF-8");
                 PrintStream shellErr = new PrintStream(err, true, "UTF-8");
                 InputStream shellIn = stdinFile.isEmpty()
                         ? new ByteArrayInputStream(new byte[0])
                         : new FileInputStream(stdinFile)) {
                System.setOut(shellOut);
                System.setErr(shellErr);
                System.setIn(shellIn);
                try {
                    if (user.isEmpty()) {
                        rc = runShell(argv);
                    } else {
                        UserGroupInformation ugi = UserGroupInformation.createRemoteUser(user);
                        rc = ugi.doAs((PrivilegedExceptionAction<Integer>) () -> runShell(argv));
                    }
                } catch (Throwable t) {
                    t.printStackTrace(shellErr);
                    rc = 255;
                } finally {
                    try {
                        FileSystem.closeAll();
                    } catch (Throwable t) {
                        t.printStackTrace(shellErr);
                    }
                    System.setOut(realOut);
                    System.setErr(realErr);
                    System.setIn(realIn);
                }
            }
            Files.write(outDir.resolve(index + ".out"), out.toByteArray());
            Files.write(outDir.resolve(index + ".err"), err.toByteArray());
            Files.write(outDir.resolve(index + ".rc"), Integer.toString(rc).getBytes(StandardCharsets.UTF_8));
            index++;
        }
        realOut.println("FSSHELL BATCH DONE " + index);
    }

    private static int runShell(String[] argv) throws Exception {
        // Quiet (the default), unlike FsShell.main: after the first command some class has
        // registered mapred-site.xml as a default resource, which a non-quiet Configuration
        // then insists on finding.
        Configuration conf = new Configuration();
        FsShell shell = new FsShell(conf);
        try {
            return ToolRunner.run(shell, argv);
        } finally {
            shell.close();
        }
    }
}
