//! `ringfs dfs`: Hadoop's FsShell commands, with its syntax, output and exit codes.
//!
//! Flow, as in FsShell: generic options (`-fs`, `-D`, `--conf`) are taken off first,
//! then the command's options are parsed (a bad option or argument count prints usage
//! and exits 255), every path argument is expanded as a glob (a glob that matches
//! nothing fails at once; a plain missing path is reported when its turn comes), and
//! each item is processed in order. A failed item prints `<cmd>: <message>` to stderr
//! and the command exits 1 at the end; other items still run.

mod commands;
pub(crate) mod format;
mod glob;
mod options;
mod paths;

use std::collections::HashMap;
use std::io::Write;

use ringfs_client::{ClientConfig, DfsClient, DfsError, FileStatus};
use ringfs_common::conf::Configuration;
use ringfs_common::ipc::exception;

pub use paths::PathItem;

/// Exit code of a usage error: FsShell returns -1.
pub const EXIT_USAGE: i32 = 255;

/// Why one item (or the whole command) failed.
#[derive(Debug, Clone)]
pub enum ShellError {
    /// Hadoop's PathIOException family: "`path' [to `target']: message[: `qualified']".
    Path { path: String, target: Option<String>, message: String, qualified: Option<String> },
    /// An exception or failure with a message of its own.
    Message(String),
    /// A bad option, argument or mode: usage printed, exit 255.
    Usage(String),
}

pub const NOT_FOUND: &str = "No such file or directory";
pub const EXISTS: &str = "File exists";
pub const IS_DIR: &str = "Is a directory";
pub const NOT_DIR: &str = "Is not a directory";
pub const NOT_EMPTY: &str = "Directory is not empty";
pub const IO_ERROR: &str = "Input/output error";

impl ShellError {
    pub fn path(path: &str, message: &str) -> ShellError {
        ShellError::Path {
            path: path.to_string(),
            target: None,
            message: message.to_string(),
            qualified: None,
        }
    }

    pub fn not_found(path: &str) -> ShellError {
        ShellError::path(path, NOT_FOUND)
    }

    /// The message FsShell prints after `<cmd>: `.
    pub fn message(&self) -> String {
        match self {
            ShellError::Path { path, target, message, qualified } => {
                let mut out = format!("`{path}'");
                if let Some(target) = target {
                    out.push_str(&format!(" to `{target}'"));
                }
                out.push_str(": ");
                out.push_str(message);
                if let Some(qualified) = qualified {
                    out.push_str(&format!(": `{qualified}'"));
                }
                out
            }
            ShellError::Message(message) | ShellError::Usage(message) => message.clone(),
        }
    }
}

impl From<DfsError> for ShellError {
    fn from(error: DfsError) -> ShellError {
        match &error {
            DfsError::Remote(remote)
                if remote.is(exception::HADOOP_ILLEGAL_ARGUMENT)
                    || remote.is(exception::ILLEGAL_ARGUMENT) =>
            {
                ShellError::Usage(first_line(&remote.message))
            }
            DfsError::Remote(remote) => ShellError::Message(first_line(&remote.message)),
            other => ShellError::Message(first_line(&other.to_string())),
        }
    }
}

impl From<std::io::Error> for ShellError {
    fn from(error: std::io::Error) -> ShellError {
        ShellError::Message(error.to_string())
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").to_string()
}

/// State of one `ringfs dfs` invocation.
pub struct Shell {
    conf: Configuration,
    /// `host:port` of fs.defaultFS.
    default_authority: String,
    clients: HashMap<String, DfsClient>,
    user: String,
    /// `/user/<user>`: the base of relative paths.
    cwd: String,
    out: std::io::BufWriter<std::io::Stdout>,
    /// The command without its dash, as errors name it (`ls`).
    name: String,
    errors: usize,
    /// `-ignoreCrc` turns read-side checksum verification off.
    verify_checksum: bool,
}

impl Shell {
    pub fn conf(&self) -> &Configuration {
        &self.conf
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn cwd(&self) -> &str {
        &self.cwd
    }

    /// Standard output, buffered.
    pub fn out(&mut self) -> &mut std::io::BufWriter<std::io::Stdout> {
        &mut self.out
    }

    /// Prints text on stdout.
    pub fn print(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
    }

    /// Has any item failed so far?
    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }

    /// Read without verifying chunk checksums (`-ignoreCrc`); call before connecting.
    pub fn set_verify_checksum(&mut self, verify: bool) {
        self.verify_checksum = verify;
    }

    /// Prints a line on stdout.
    pub fn println(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
    }

    /// Reports a failed item: `<cmd>: <message>` on stderr; the command will exit 1.
    pub fn report(&mut self, error: &ShellError) {
        let _ = self.out.flush();
        eprintln!("{}: {}", self.name, error.message());
        self.errors += 1;
    }

    /// Reports an error that is not counted as a failure.
    pub fn warn(&mut self, message: &str) {
        let _ = self.out.flush();
        eprintln!("{}: {message}", self.name);
    }

    /// The client of the namenode at `authority` (`host:port`), connected on first use.
    pub async fn client(&mut self, authority: &str) -> Result<DfsClient, ShellError> {
        if let Some(client) = self.clients.get(authority) {
            return Ok(client.clone());
        }
        let mut config = ClientConfig::from_conf(&self.conf).map_err(ShellError::from)?;
        config.namenode_addr = authority.to_string();
        config.user = self.user.clone();
        config.working_dir = Some(self.cwd.clone());
        config.verify_checksum = self.verify_checksum;
        let client = DfsClient::connect(config).await.map_err(|e| {
            let cause = match &e {
                DfsError::Rpc { source: ringfs_rpc::RpcError::Connect { source, .. }, .. } => {
                    source.to_string()
                }
                other => other.to_string(),
            };
            ShellError::Message(format!("Call to {authority} failed on connection exception: {cause}"))
        })?;
        self.clients.insert(authority.to_string(), client.clone());
        Ok(client)
    }

    /// The client of fs.defaultFS.
    pub async fn default_client(&mut self) -> Result<DfsClient, ShellError> {
        let authority = self.default_authority.clone();
        self.client(&authority).await
    }

    pub fn default_authority(&self) -> &str {
        &self.default_authority
    }

    /// `hdfs://host:port`, the URI the shell prints for a filesystem.
    pub fn fs_uri(authority: &str) -> String {
        format!("hdfs://{authority}")
    }
}

/// Usage lines of the commands ringfs implements, as `hadoop fs -usage` prints them.
pub const USAGES: &[(&str, &str)] = &[
    ("appendToFile", "-appendToFile [-n] <localsrc> ... <dst>"),
    ("cat", "-cat [-ignoreCrc] <src> ..."),
    ("checksum", "-checksum [-v] <src> ..."),
    ("chgrp", "-chgrp [-R] GROUP PATH..."),
    ("chmod", "-chmod [-R] <MODE[,MODE]... | OCTALMODE> PATH..."),
    ("chown", "-chown [-R] [OWNER][:[GROUP]] PATH..."),
    ("concat", "-concat <target path> <src path> <src path> ..."),
    ("copyFromLocal", "-copyFromLocal [-f] [-p] [-l] [-d] [-t <thread count>] [-q <thread pool queue size>] <localsrc> ... <dst>"),
    ("copyToLocal", "-copyToLocal [-f] [-p] [-crc] [-ignoreCrc] [-t <thread count>] [-q <thread pool queue size>] <src> ... <localdst>"),
    ("count", "-count [-q] [-h] [-v] [-t [<storage type>]] [-u] [-x] [-e] [-s] <path> ..."),
    ("cp", "-cp [-f] [-p | -p[topax]] [-d] [-t <thread count>] [-q <thread pool queue size>] <src> ... <dst>"),
    ("df", "-df [-h] [<path> ...]"),
    ("du", "-du [-s] [-h] [-v] [-x] <path> ..."),
    ("expunge", "-expunge [-immediate] [-fs <path>]"),
    ("find", "-find <path> ... <expression> ..."),
    ("get", "-get [-f] [-p] [-crc] [-ignoreCrc] [-t <thread count>] [-q <thread pool queue size>] <src> ... <localdst>"),
    ("getmerge", "-getmerge [-nl] [-skip-empty-file] <src> <localdst>"),
    ("head", "-head <file>"),
    ("help", "-help [cmd ...]"),
    ("ls", "-ls [-C] [-d] [-h] [-q] [-R] [-t] [-S] [-r] [-u] [-e] [<path> ...]"),
    ("mkdir", "-mkdir [-p] <path> ..."),
    ("moveFromLocal", "-moveFromLocal [-f] [-p] [-l] [-d] <localsrc> ... <dst>"),
    ("mv", "-mv <src> ... <dst>"),
    ("put", "-put [-f] [-p] [-l] [-d] [-t <thread count>] [-q <thread pool queue size>] <localsrc> ... <dst>"),
    ("rm", "-rm [-f] [-r|-R] [-skipTrash] [-safely] <src> ..."),
    ("rmdir", "-rmdir [--ignore-fail-on-non-empty] <dir> ..."),
    ("setrep", "-setrep [-R] [-w] <rep> <path> ..."),
    ("stat", "-stat [format] <path> ..."),
    ("tail", "-tail [-f] [-s <sleep interval>] <file>"),
    ("test", "-test -[defswrz] <path>"),
    ("text", "-text [-ignoreCrc] <src> ..."),
    ("touch", "-touch [-a] [-m] [-t TIMESTAMP (yyyyMMdd:HHmmss) ] [-c] <path> ..."),
    ("touchz", "-touchz <path> ..."),
    ("truncate", "-truncate [-w] <length> <path> ..."),
    ("usage", "-usage [cmd ...]"),
];

/// Deprecated aliases FsShell still accepts, and what they run.
const ALIASES: &[(&str, &str, &[&str])] =
    &[("lsr", "ls", &["-R"]), ("rmr", "rm", &["-r"]), ("dus", "du", &["-s"])];

fn usage_of(name: &str) -> Option<&'static str> {
    USAGES.iter().find(|(n, _)| *n == name).map(|(_, u)| *u)
}

fn print_all_usage(to: &mut dyn Write) {
    let _ = writeln!(to, "Usage: ringfs dfs [generic options]");
    for (_, usage) in USAGES {
        let _ = writeln!(to, "\t[{usage}]");
    }
    let _ = writeln!(
        to,
        "\nGeneric options supported are:\n\
         --conf <configuration dir>         read core-site.xml and hdfs-site.xml from it\n\
         -D <property=value>                define a value for a given property\n\
         -fs <hdfs://namenode:port>         specify default filesystem URL to use, overrides 'fs.defaultFS' property from configurations.\n"
    );
}

/// Runs `ringfs dfs ARGS` and returns the exit code.
pub fn run(args: Vec<String>) -> i32 {
    let (conf, rest) = match crate::cmd::conf::load(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("dfs: {e:#}");
            return EXIT_USAGE;
        }
    };
    let Some(command) = rest.first().cloned() else {
        print_all_usage(&mut std::io::stderr());
        return EXIT_USAGE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dfs: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(run_command(conf, command, rest[1..].to_vec()))
}

async fn run_command(conf: Configuration, command: String, mut args: Vec<String>) -> i32 {
    let Some(stripped) = command.strip_prefix('-') else {
        eprintln!("{command}: Unknown command");
        print_all_usage(&mut std::io::stderr());
        return EXIT_USAGE;
    };
    let mut name = stripped.to_string();
    if let Some((_, target, extra)) = ALIASES.iter().find(|(alias, _, _)| *alias == name) {
        eprintln!("{command}: DEPRECATED: Please use '{} {}' instead.", target, extra.join(" "));
        let mut new_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        new_args.append(&mut args);
        args = new_args;
        name = target.to_string();
    }
    if usage_of(&name).is_none() {
        eprintln!("{command}: Unknown command");
        print_all_usage(&mut std::io::stderr());
        return EXIT_USAGE;
    }
    let default_fs = conf.get_str("fs.defaultFS").to_string();
    let default_authority = match ringfs_client::uri_authority(&default_fs) {
        Some(authority) => authority,
        None if default_fs.is_empty() || default_fs.starts_with("hdfs:") => conf.namenode_address(),
        None => {
            eprintln!(
                "-{name}: fs.defaultFS {default_fs} is not an hdfs:// URI; ringfs dfs speaks HDFS only"
            );
            return EXIT_USAGE;
        }
    };
    let user = ringfs_client::default_user();
    let mut shell = Shell {
        conf,
        default_authority,
        clients: HashMap::new(),
        cwd: format!("/user/{user}"),
        user,
        out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        name: name.clone(),
        errors: 0,
        verify_checksum: true,
    };
    let result = commands::dispatch(&mut shell, &name, args).await;
    let _ = shell.out.flush();
    match result {
        Ok(code) if shell.errors > 0 => code.max(1),
        Ok(code) => code,
        Err(ShellError::Usage(message)) => {
            eprintln!("-{name}: {message}");
            if let Some(usage) = usage_of(&name) {
                eprintln!("Usage: ringfs dfs [generic options] {usage}");
            }
            EXIT_USAGE
        }
        Err(error) => {
            eprintln!("{name}: {}", error.message());
            1
        }
    }
}

/// The help text of `-usage`/`-help` for the given commands (all when empty).
pub fn usage_text(names: &[String]) -> Result<String, ShellError> {
    let mut out = String::new();
    if names.is_empty() {
        let mut buffer = Vec::new();
        print_all_usage(&mut buffer);
        return Ok(String::from_utf8_lossy(&buffer).into_owned());
    }
    for name in names {
        let name = name.trim_start_matches('-');
        let usage = usage_of(name).ok_or_else(|| ShellError::Message(format!("-{name}: Unknown command")))?;
        out.push_str(&format!("Usage: ringfs dfs [generic options] {usage}\n"));
    }
    Ok(out)
}

/// Shared by commands that walk directories: the entries of `item`, as child items.
pub async fn children(shell: &mut Shell, item: &PathItem) -> Result<Vec<PathItem>, ShellError> {
    let client = shell.client(&item.authority).await?;
    let entries: Vec<FileStatus> = client
        .namenode()
        .get_listing(&item.path)
        .await?
        .ok_or_else(|| ShellError::not_found(&item.display))?;
    Ok(entries.into_iter().filter(|e| e.path != item.path).map(|e| item.child(e)).collect())
}
