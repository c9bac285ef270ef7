//! `ringfs datanode`.

/// Runs the subcommand and returns the process exit code.
pub fn run(_args: Vec<String>) -> i32 {
    eprintln!("ringfs datanode: not built yet in this version");
    2
}
