//! `ringfs dfs`: Hadoop's FsShell commands over the native client (see `crate::shell`).

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    crate::shell::run(args)
}
