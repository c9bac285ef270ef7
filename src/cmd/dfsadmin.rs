//! `ringfs dfsadmin`: Hadoop's DFSAdmin commands that report on and steer the namenode:
//! `-report [-live] [-dead] [-decommissioning] [-enteringmaintenance] [-inmaintenance]`,
//! `-safemode enter|leave|get|wait|forceExit`, `-setQuota`, `-clrQuota`,
//! `-setSpaceQuota`, `-clrSpaceQuota`. Output follows DFSAdmin and
//! DatanodeInfo.getDatanodeReport line for line.

use std::fmt::Write as _;
use std::time::Duration;

use ringfs_client::{default_user, uri_authority, DfsError, NamenodeClient};
use ringfs_common::conf::{parse_size, Configuration};
use ringfs_common::proto::hdfs::datanode_info_proto::AdminState;
use ringfs_common::proto::hdfs::{
    DatanodeInfoProto, DatanodeReportTypeProto, SafeModeActionProto, SetQuotaRequestProto,
    SetQuotaResponseProto,
};

use crate::shell::format::{java_fixed, long_to_string};

/// Exit code of errors and usage mistakes: DFSAdmin returns -1.
const EXIT_FAILURE: i32 = 255;

/// How often `-safemode wait` asks again (DFSAdmin sleeps 5 s).
const SAFEMODE_WAIT_POLL: Duration = Duration::from_secs(5);

/// Quota values DFSAdmin sends: leave this quota alone, or remove it.
const QUOTA_DONT_SET: u64 = i64::MAX as u64;
const QUOTA_RESET: u64 = u64::MAX;

/// The rack every node is on when no topology is configured; not printed.
const DEFAULT_RACK: &str = "/default-rack";

const USAGE: &str = "\
Usage: ringfs dfsadmin [--conf DIR] [-D key=value] [-fs hdfs://host:port]
\t[-report [-live] [-dead] [-decommissioning] [-enteringmaintenance] [-inmaintenance]]
\t[-safemode <enter | leave | get | wait | forceExit>]
\t[-setQuota <quota> <dirname>...<dirname>]
\t[-clrQuota <dirname>...<dirname>]
\t[-setSpaceQuota <quota> <dirname>...<dirname>]
\t[-clrSpaceQuota <dirname>...<dirname>]
\t[-help]
";

/// Runs the subcommand and returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    let (conf, rest) = match crate::cmd::conf::load(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("dfsadmin: {e:#}");
            return EXIT_FAILURE;
        }
    };
    let Some(command) = rest.first().cloned() else {
        eprint!("{USAGE}");
        return EXIT_FAILURE;
    };
    if matches!(command.as_str(), "-help" | "--help" | "-h") {
        print!("{USAGE}");
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dfsadmin: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(run_command(conf, command, rest[1..].to_vec()))
}

/// A command's failure: a usage mistake (usage printed) or an error message.
enum AdminError {
    Usage,
    Failed(String),
    /// Already printed (one line per failed path).
    Reported,
}

impl From<DfsError> for AdminError {
    fn from(error: DfsError) -> AdminError {
        AdminError::Failed(error.to_string().lines().next().unwrap_or("").to_string())
    }
}

async fn run_command(conf: Configuration, command: String, args: Vec<String>) -> i32 {
    let name = command.trim_start_matches('-').to_string();
    let usage_line = match name.as_str() {
        "report" => "[-report] [-live] [-dead] [-decommissioning] [-enteringmaintenance] [-inmaintenance]",
        "safemode" => "[-safemode enter | leave | get | wait | forceExit]",
        "setQuota" => "[-setQuota <quota> <dirname>...<dirname>]",
        "clrQuota" => "[-clrQuota <dirname>...<dirname>]",
        "setSpaceQuota" => "[-setSpaceQuota <quota> [-storageType <storagetype>] <dirname>...<dirname>]",
        "clrSpaceQuota" => "[-clrSpaceQuota [-storageType <storagetype>] <dirname>...<dirname>]",
        _ => {
            eprintln!("{command}: Unknown command");
            eprint!("{USAGE}");
            return EXIT_FAILURE;
        }
    };
    let default_fs = conf.get_str("fs.defaultFS").to_string();
    let authority = uri_authority(&default_fs).unwrap_or_else(|| conf.namenode_address());
    let result = match NamenodeClient::connect(&authority, &default_user()).await {
        Ok(namenode) => match name.as_str() {
            "report" => report(&namenode, &args).await,
            "safemode" => safe_mode(&namenode, &args).await,
            _ => quota(&namenode, &name, &args).await,
        },
        Err(e) => Err(AdminError::Failed(format!("Call to {authority} failed on connection exception: {e}"))),
    };
    match result {
        Ok(()) => 0,
        Err(AdminError::Usage) => {
            eprintln!("Usage: ringfs dfsadmin {usage_line}");
            EXIT_FAILURE
        }
        Err(AdminError::Failed(message)) => {
            eprintln!("{name}: {message}");
            EXIT_FAILURE
        }
        Err(AdminError::Reported) => EXIT_FAILURE,
    }
}

/// `-safemode enter|leave|get|wait|forceExit`: prints "Safe mode is ON/OFF".
async fn safe_mode(namenode: &NamenodeClient, args: &[String]) -> Result<(), AdminError> {
    let [action] = args else { return Err(AdminError::Usage) };
    let (action, wait) = match action.to_ascii_lowercase().as_str() {
        "leave" => (SafeModeActionProto::SafemodeLeave, false),
        "enter" => (SafeModeActionProto::SafemodeEnter, false),
        "get" => (SafeModeActionProto::SafemodeGet, false),
        "wait" => (SafeModeActionProto::SafemodeGet, true),
        "forceexit" => (SafeModeActionProto::SafemodeForceExit, false),
        _ => return Err(AdminError::Usage),
    };
    let mut in_safe_mode = namenode.set_safe_mode(action, false).await?;
    while wait && in_safe_mode {
        tokio::time::sleep(SAFEMODE_WAIT_POLL).await;
        in_safe_mode = namenode.set_safe_mode(SafeModeActionProto::SafemodeGet, false).await?;
    }
    println!("Safe mode is {}", if in_safe_mode { "ON" } else { "OFF" });
    Ok(())
}

/// StringUtils.byteDesc: `755.92 GB`.
fn byte_desc(bytes: u64) -> String {
    long_to_string(bytes as i64, "B", 2)
}

/// DFSUtilClient.percent2String of a float percentage computed as Java does.
fn percent_of(part: u64, whole: u64, empty: f32) -> String {
    let value = if whole == 0 { empty } else { (part as f32 * 100.0) / whole as f32 };
    format!("{}%", java_fixed(f64::from(value), 2))
}

/// `new Date(ms).toString()`: `Sat Nov 21 17:30:00 UTC 2026` in local time.
fn java_date(epoch_ms: u64) -> String {
    let offset = ringfs_client::time::format_local(epoch_ms as i64, "%:z");
    let zone = if offset == "+00:00" { "UTC".to_string() } else { format!("GMT{offset}") };
    let date = ringfs_client::time::format_local(epoch_ms as i64, "%a %b %d %H:%M:%S");
    let year = ringfs_client::time::format_local(epoch_ms as i64, "%Y");
    format!("{date} {zone} {year}")
}

/// The host name of an IP as a reverse lookup through /etc/hosts finds it, else the IP
/// (what InetAddress.getHostName returns when it cannot resolve).
fn host_name_of(ip: &str) -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.next()?;
            let name = fields.next()?;
            (address == ip).then(|| name.to_string())
        })
        .next()
        .unwrap_or_else(|| ip.to_string())
}

/// DatanodeInfo.getDatanodeReport.
fn datanode_report(node: &DatanodeInfoProto) -> String {
    let id = &node.id;
    let capacity = node.capacity.unwrap_or(0);
    let used = node.dfs_used.unwrap_or(0);
    let remaining = node.remaining.unwrap_or(0);
    let non_dfs_used = node.non_dfs_used.unwrap_or(0);
    let cache_capacity = node.cache_capacity.unwrap_or(0);
    let cache_used = node.cache_used.unwrap_or(0);
    let cache_remaining = cache_capacity.saturating_sub(cache_used);
    let name = format!("{}:{}", id.ip_addr, id.xfer_port);
    let mut out = String::new();
    let _ = writeln!(out, "Name: {name} ({})", host_name_of(&id.ip_addr));
    let _ = writeln!(out, "Hostname: {}", id.host_name);
    if let Some(rack) = node.location.as_deref().filter(|r| *r != DEFAULT_RACK) {
        let _ = writeln!(out, "Rack: {rack}");
    }
    if let Some(domain) = node.upgrade_domain.as_deref() {
        let _ = writeln!(out, "Upgrade domain: {domain}");
    }
    let status = match node.admin_state() {
        AdminState::Decommissioned => "Decommissioned",
        AdminState::DecommissionInprogress => "Decommission in progress",
        AdminState::InMaintenance => "In maintenance",
        AdminState::EnteringMaintenance => "Entering maintenance",
        AdminState::Normal => "Normal",
    };
    let _ = writeln!(out, "Decommission Status : {status}");
    let _ = writeln!(out, "Configured Capacity: {capacity} ({})", byte_desc(capacity));
    let _ = writeln!(out, "DFS Used: {used} ({})", byte_desc(used));
    let _ = writeln!(out, "Non DFS Used: {non_dfs_used} ({})", byte_desc(non_dfs_used));
    let _ = writeln!(out, "DFS Remaining: {remaining} ({})", byte_desc(remaining));
    let _ = writeln!(out, "DFS Used%: {}", percent_of(used, capacity, 100.0));
    let _ = writeln!(out, "DFS Remaining%: {}", percent_of(remaining, capacity, 0.0));
    let _ = writeln!(out, "Configured Cache Capacity: {cache_capacity} ({})", byte_desc(cache_capacity));
    let _ = writeln!(out, "Cache Used: {cache_used} ({})", byte_desc(cache_used));
    let _ = writeln!(out, "Cache Remaining: {cache_remaining} ({})", byte_desc(cache_remaining));
    let _ = writeln!(out, "Cache Used%: {}", percent_of(cache_used, cache_capacity, 100.0));
    let _ = writeln!(out, "Cache Remaining%: {}", percent_of(cache_remaining, cache_capacity, 0.0));
    let _ = writeln!(out, "Xceivers: {}", node.xceiver_count.unwrap_or(0));
    let _ = writeln!(out, "Last contact: {}", java_date(node.last_update.unwrap_or(0)));
    let last_report = match node.last_block_report_time.unwrap_or(0) {
        0 => "Never".to_string(),
        ms => java_date(ms),
    };
    let _ = writeln!(out, "Last Block Report: {last_report}");
    let _ = writeln!(out, "Num of Blocks: {}", node.num_blocks.unwrap_or(0));
    out
}

/// `-report`: the cluster summary, then each requested datanode list.
async fn report(namenode: &NamenodeClient, args: &[String]) -> Result<(), AdminError> {
    let filters = ["-live", "-dead", "-decommissioning", "-enteringmaintenance", "-inmaintenance"];
    if let Some(unknown) = args.iter().find(|a| !filters.contains(&a.as_str())) {
        eprintln!("report: unknown option {unknown}");
        return Err(AdminError::Usage);
    }
    let stats = namenode.get_fs_stats().await?;
    let present = stats.used + stats.remaining;
    let in_safe_mode = namenode.set_safe_mode(SafeModeActionProto::SafemodeGet, false).await?;
    let mut out = String::new();
    if in_safe_mode {
        let _ = writeln!(out, "Safe mode is ON");
        if stats.blocks_in_future > 0 {
            let _ = writeln!(out, "\nWARNING: ");
            let _ = writeln!(out, "Name node has detected blocks with generation stamps in future.");
            let _ = writeln!(
                out,
                "Forcing exit from safemode will cause {} byte(s) to be deleted.",
                stats.blocks_in_future
            );
            let _ = writeln!(out, "If you are sure that the NameNode was started with the correct metadata files then you may proceed with '-safemode forceExit'\n");
        }
    }
    let _ = writeln!(out, "Configured Capacity: {} ({})", stats.capacity, byte_desc(stats.capacity));
    let _ = writeln!(out, "Present Capacity: {present} ({})", byte_desc(present));
    let _ = writeln!(out, "DFS Remaining: {} ({})", stats.remaining, byte_desc(stats.remaining));
    let _ = writeln!(out, "DFS Used: {} ({})", stats.used, byte_desc(stats.used));
    let used_fraction = if present == 0 { 0.0 } else { stats.used as f64 / present as f64 };
    let _ = writeln!(out, "DFS Used%: {}%", java_fixed(used_fraction * 100.0, 2));
    let replicated = namenode.get_fs_replicated_block_stats().await?;
    let _ = writeln!(out, "Replicated Blocks:");
    let _ = writeln!(out, "\tUnder replicated blocks: {}", replicated.low_redundancy);
    let _ = writeln!(out, "\tBlocks with corrupt replicas: {}", replicated.corrupt_blocks);
    let _ = writeln!(out, "\tMissing blocks: {}", replicated.missing_blocks);
    let _ =
        writeln!(out, "\tMissing blocks (with replication factor 1): {}", replicated.missing_repl_one_blocks);
    if let Some(highest) = replicated.highest_prio_low_redundancy_blocks {
        let _ = writeln!(out, "\tLow redundancy blocks with highest priority to recover: {highest}");
    }
    let _ = writeln!(out, "\tPending deletion blocks: {}", replicated.pending_deletion_blocks);
    let erasure_coded: ringfs_common::proto::hdfs::GetFsEcBlockGroupStatsResponseProto = namenode
        .call("getFsECBlockGroupStats", &ringfs_common::proto::hdfs::GetFsEcBlockGroupStatsRequestProto {})
        .await?;
    let _ = writeln!(out, "Erasure Coded Block Groups: ");
    let _ = writeln!(out, "\tLow redundancy block groups: {}", erasure_coded.low_redundancy);
    let _ = writeln!(out, "\tBlock groups with corrupt internal blocks: {}", erasure_coded.corrupt_blocks);
    let _ = writeln!(out, "\tMissing block groups: {}", erasure_coded.missing_blocks);
    if let Some(highest) = erasure_coded.highest_prio_low_redundancy_blocks {
        let _ = writeln!(out, "\tLow redundancy blocks with highest priority to recover: {highest}");
    }
    let _ = writeln!(out, "\tPending deletion blocks: {}", erasure_coded.pending_deletion_blocks);
    let _ = writeln!(out);
    let _ = writeln!(out, "-------------------------------------------------");
    let wanted = |flag: &str| args.iter().any(|a| a == flag);
    let list_all = args.is_empty();
    let lists = [
        ("-live", DatanodeReportTypeProto::Live, "Live"),
        ("-dead", DatanodeReportTypeProto::Dead, "Dead"),
        ("-decommissioning", DatanodeReportTypeProto::Decommissioning, "Decommissioning"),
        ("-enteringmaintenance", DatanodeReportTypeProto::EnteringMaintenance, "Entering maintenance"),
        ("-inmaintenance", DatanodeReportTypeProto::InMaintenance, "In maintenance"),
    ];
    for (flag, kind, title) in lists {
        if !list_all && !wanted(flag) {
            continue;
        }
        let nodes = namenode.get_datanode_report(kind).await?;
        if !nodes.is_empty() || wanted(flag) {
            let _ = writeln!(out, "{title} datanodes ({}):\n", nodes.len());
        }
        for node in &nodes {
            let _ = writeln!(out, "{}", datanode_report(node));
        }
    }
    print!("{out}");
    Ok(())
}

/// `-setQuota N dirs`, `-clrQuota dirs`, `-setSpaceQuota N dirs`, `-clrSpaceQuota dirs`.
async fn quota(namenode: &NamenodeClient, command: &str, args: &[String]) -> Result<(), AdminError> {
    let (namespace, space, paths) = match command {
        "setQuota" | "setSpaceQuota" => {
            let [value, paths @ ..] = args else { return Err(AdminError::Usage) };
            if paths.is_empty() {
                return Err(AdminError::Usage);
            }
            let parsed = if command == "setQuota" { value.parse::<u64>().ok() } else { parse_size(value) };
            let Some(quota) = parsed.filter(|q| *q > 0 && *q < QUOTA_DONT_SET) else {
                return Err(AdminError::Failed(format!("\"{value}\" is not a valid value for a quota.")));
            };
            if command == "setQuota" {
                (quota, QUOTA_DONT_SET, paths)
            } else {
                (QUOTA_DONT_SET, quota, paths)
            }
        }
        "clrQuota" if !args.is_empty() => (QUOTA_RESET, QUOTA_DONT_SET, args),
        "clrSpaceQuota" if !args.is_empty() => (QUOTA_DONT_SET, QUOTA_RESET, args),
        _ => return Err(AdminError::Usage),
    };
    let mut failed = false;
    for path in paths {
        let path = ringfs_client::resolve_path(&format!("/user/{}", namenode.user()), path)?;
        let request = SetQuotaRequestProto {
            path: path.clone(),
            namespace_quota: namespace,
            storagespace_quota: space,
            storage_type: None,
        };
        if let Err(e) = namenode.call::<_, SetQuotaResponseProto>("setQuota", &request).await {
            eprintln!("{command}: {}", e.to_string().lines().next().unwrap_or(""));
            failed = true;
        }
    }
    if failed {
        Err(AdminError::Reported)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfs_common::proto::hdfs::DatanodeIdProto;

    #[test]
    fn datanode_report_lines() {
        let node = DatanodeInfoProto {
            id: DatanodeIdProto {
                ip_addr: "127.0.0.1".into(),
                host_name: "localhost".into(),
                datanode_uuid: "u".into(),
                xfer_port: 9866,
                info_port: 9864,
                ipc_port: 9867,
                info_secure_port: None,
            },
            capacity: Some(1 << 30),
            dfs_used: Some(1 << 20),
            remaining: Some(512 << 20),
            non_dfs_used: Some(511 << 20),
            location: Some(DEFAULT_RACK.into()),
            xceiver_count: Some(2),
            last_update: Some(0),
            num_blocks: Some(7),
            ..Default::default()
        };
        let report = datanode_report(&node);
        let lines: Vec<&str> = report.lines().collect();
        assert!(lines[0].starts_with("Name: 127.0.0.1:9866 ("), "{}", lines[0]);
        assert_eq!(lines[1], "Hostname: localhost");
        assert_eq!(lines[2], "Decommission Status : Normal");
        assert_eq!(lines[3], "Configured Capacity: 1073741824 (1 GB)");
        assert_eq!(lines[4], "DFS Used: 1048576 (1 MB)");
        assert_eq!(lines[5], "Non DFS Used: 535822336 (511 MB)");
        assert_eq!(lines[6], "DFS Remaining: 536870912 (512 MB)");
        assert_eq!(lines[7], "DFS Used%: 0.10%");
        assert_eq!(lines[8], "DFS Remaining%: 50.00%");
        assert_eq!(lines[9], "Configured Cache Capacity: 0 (0 B)");
        assert_eq!(lines[12], "Cache Used%: 100.00%");
        assert_eq!(lines[13], "Cache Remaining%: 0.00%");
        assert_eq!(lines[14], "Xceivers: 2");
        assert!(lines[15].starts_with("Last contact: Thu Jan 01 "), "{}", lines[15]);
        assert_eq!(lines[16], "Last Block Report: Never");
        assert_eq!(lines[17], "Num of Blocks: 7");
    }

    #[test]
    fn java_dates() {
        let ms = 1_795_278_605_123;
        let date = java_date(ms);
        if ringfs_client::time::format_local(ms as i64, "%:z") == "+00:00" {
            assert_eq!(date, "Sat Nov 21 16:30:05 UTC 2026");
        } else {
            assert!(date.contains(" GMT") && date.ends_with(" 2026"), "{date}");
        }
    }
}
