//! `ringfs`: the one binary operators run.
//!
//! ```text
//! ringfs namenode [-format [-force]]     ringfs datanode
//! ringfs cluster [--datanodes N] [--base-dir DIR]
//! ringfs dfs -ls /                       ringfs dfsadmin -report
//! ```
//! Every subcommand takes `--conf DIR` (core-site.xml, hdfs-site.xml) and `-D key=value`.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

mod cmd;
mod shell;

const USAGE: &str = "\
Usage: ringfs <command> [--conf DIR] [-D key=value ...] [args]

Commands:
  namenode [-format [-force]]   run the NameNode (or initialise dfs.namenode.name.dir)
  datanode                      run a DataNode
  cluster [--datanodes N] [--base-dir DIR]
                                run a local cluster: one namenode and N datanodes on loopback
  dfs <FsShell command>         the Hadoop FsShell commands (-ls, -put, -get, -cat ...)
  dfsadmin <command>            -report, -safemode get|enter|leave|wait
  version                       print the version
";

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || matches!(args[0].as_str(), "-h" | "--help" | "help") {
        print!("{USAGE}");
        std::process::exit(if args.is_empty() { 1 } else { 0 });
    }
    let command = args.remove(0);
    let code = match command.as_str() {
        "namenode" => cmd::namenode::run(args),
        "datanode" => cmd::datanode::run(args),
        "cluster" => cmd::cluster::run(args),
        "dfs" | "fs" => cmd::dfs::run(args),
        "dfsadmin" => cmd::dfsadmin::run(args),
        "version" => {
            println!("ringfs {}", env!("CARGO_PKG_VERSION"));
            0
        }
        other => {
            eprintln!("ringfs: unknown command '{other}'\n\n{USAGE}");
            1
        }
    };
    std::process::exit(code);
}
