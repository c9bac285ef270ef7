//! `ringfs namenode`.

/// Runs the subcommand and returns the process exit code.
pub fn run(_args: Vec<String>) -> i32 {
    eprintln!("ringfs namenode: not built yet in this version");
    2
}
