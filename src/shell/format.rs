//! FsShell's output formats: `-ls` lines, `-du`/`-df` tables, `-count` columns,
//! `-stat` specifiers, Hadoop's human-readable sizes and permission strings.

use ringfs_client::{ContentSummary, FileKind, FileStatus, QuotaUsage};

/// `rwxr-xr-x`, with the sticky bit as `t` (or `T` without other-execute).
pub fn permission_string(permission: u16) -> String {
    let mut out = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (permission >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    if permission & 0o1000 != 0 {
        let last = if permission & 1 != 0 { 't' } else { 'T' };
        out.pop();
        out.push(last);
    }
    out
}

/// Hadoop's TraditionalBinaryPrefix.long2String(n, "", 1): `4.9 K`, `4 K` for exact
/// multiples, plain digits below 1024; rounding half up as Java's `%.1f`.
pub fn human_size(n: i64) -> String {
    long_to_string(n, "", 1)
}

/// TraditionalBinaryPrefix.long2String(n, unit, decimals): `755.93 GB` for
/// `byteDesc`, `0 B` below a kilobyte.
pub fn long_to_string(n: i64, unit: &str, decimals: u32) -> String {
    const SYMBOLS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    if n == i64::MIN {
        return format!("-8 E{unit}");
    }
    let (sign, value) = if n < 0 { ("-", n.unsigned_abs()) } else { ("", n as u64) };
    if value < 1024 {
        return if unit.is_empty() { format!("{sign}{value}") } else { format!("{sign}{value} {unit}") };
    }
    let mut index = 0;
    while index + 1 < SYMBOLS.len() && value >= 1u64 << (10 * (index + 2)) {
        index += 1;
    }
    let shift = 10 * (index as u32 + 1);
    if value & ((1u64 << shift) - 1) == 0 {
        return format!("{sign}{} {}{unit}", value >> shift, SYMBOLS[index]);
    }
    let mut text = fixed_point(value, shift, decimals);
    if text.starts_with("1024") && index + 1 < SYMBOLS.len() {
        index += 1;
        text = fixed_point(value, shift + 10, decimals);
    }
    format!("{sign}{text} {}{unit}", SYMBOLS[index])
}

/// `value / 2^shift` with `decimals` decimals, rounded half up (exact: the quotient is
/// a binary fraction, as the double Java formats is).
fn fixed_point(value: u64, shift: u32, decimals: u32) -> String {
    let scale = 10u128.pow(decimals);
    let scaled = (u128::from(value) * scale * 2 + (1u128 << shift)) >> (shift + 1);
    if decimals == 0 {
        return scaled.to_string();
    }
    format!("{}.{:0width$}", scaled / scale, scaled % scale, width = decimals as usize)
}

/// Java's `String.format("%.Nf", x)`: the shortest decimal form of the double, rounded
/// half up at N decimals.
pub fn java_fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".to_string()
        } else if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let negative = x < 0.0;
    let digits = format!("{:e}", x.abs());
    let (mantissa, exponent) = digits.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("numeric exponent");
    let mantissa: String = mantissa.chars().filter(|c| *c != '.').collect();
    // value = 0.mantissa * 10^(exponent + 1)
    let point = exponent + 1;
    let mut integer_digits: Vec<u8> = Vec::new();
    let mut fraction_digits: Vec<u8> = Vec::new();
    for (i, d) in mantissa.bytes().enumerate() {
        if (i as i32) < point {
            integer_digits.push(d - b'0');
        } else {
            fraction_digits.push(d - b'0');
        }
    }
    if point > mantissa.len() as i32 {
        integer_digits.extend(std::iter::repeat_n(0, (point - mantissa.len() as i32) as usize));
    }
    if point < 0 {
        let mut padded = vec![0u8; (-point) as usize];
        padded.extend(fraction_digits);
        fraction_digits = padded;
    }
    let round_up = fraction_digits.get(decimals).is_some_and(|d| *d >= 5);
    fraction_digits.resize(decimals, 0);
    let mut all: Vec<u8> = integer_digits.iter().chain(fraction_digits.iter()).copied().collect();
    if all.is_empty() {
        all.push(0);
    }
    if round_up {
        let mut i = all.len();
        loop {
            if i == 0 {
                all.insert(0, 1);
                break;
            }
            i -= 1;
            if all[i] == 9 {
                all[i] = 0;
            } else {
                all[i] += 1;
                break;
            }
        }
    }
    let split = all.len() - decimals;
    let integer: String = all[..split].iter().map(|d| char::from(b'0' + d)).collect();
    let integer = if integer.is_empty() { "0".to_string() } else { integer };
    let fraction: String = all[split..].iter().map(|d| char::from(b'0' + d)).collect();
    let sign = if negative && all.iter().any(|d| *d != 0) { "-" } else { "" };
    if decimals == 0 {
        format!("{sign}{integer}")
    } else {
        format!("{sign}{integer}.{fraction}")
    }
}

/// A size as `-h` asks for it.
pub fn size(n: i64, human: bool) -> String {
    if human {
        human_size(n)
    } else {
        n.to_string()
    }
}

/// StringUtils.formatPercent(fraction, 0): `8%`, `NaN%` for 0/0.
pub fn percent(fraction: f64) -> String {
    format!("{}%", java_fixed(fraction * 100.0, 0))
}

/// Column widths of `-ls`. They start at Hadoop's minimums and only grow while one
/// command runs, as Ls's fields do.
#[derive(Debug, Clone)]
pub struct LsWidths {
    replication: usize,
    length: usize,
    owner: usize,
    group: usize,
}

impl Default for LsWidths {
    fn default() -> LsWidths {
        LsWidths { replication: 3, length: 10, owner: 0, group: 0 }
    }
}

impl LsWidths {
    pub fn adjust<'a>(&mut self, stats: impl IntoIterator<Item = &'a FileStatus>) {
        for stat in stats {
            self.replication = self.replication.max(stat.replication.to_string().len());
            self.length = self.length.max(stat.length.to_string().len());
            self.owner = self.owner.max(stat.owner.len());
            self.group = self.group.max(stat.group.len());
        }
    }
}

/// How `-ls` prints a line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LsStyle {
    pub human: bool,
    pub use_access_time: bool,
    pub hide_non_printable: bool,
}

/// One `-ls` line: `drwxr-xr-x   - user group          0 2026-11-21 16:30 /path`.
pub fn ls_line(stat: &FileStatus, display: &str, widths: &LsWidths, style: LsStyle) -> String {
    let kind = if stat.is_dir() { 'd' } else { '-' };
    let acl = if stat.has_acl { '+' } else { ' ' };
    let replication = if stat.is_file() { stat.replication.to_string() } else { "-".to_string() };
    let owner = pad_left_aligned(&stat.owner, widths.owner);
    let group = pad_left_aligned(&stat.group, widths.group);
    let length = size(stat.length as i64, style.human);
    let time_ms = if style.use_access_time { stat.access_time_ms } else { stat.modification_time_ms };
    let date = ringfs_client::time::format_local(time_ms as i64, "%Y-%m-%d %H:%M");
    let path = if style.hide_non_printable { printable(display) } else { display.to_string() };
    format!(
        "{kind}{}{acl}{replication:>rw$} {owner}{group}{length:>lw$} {date} {path}",
        permission_string(stat.permission),
        rw = widths.replication,
        lw = widths.length,
    )
}

/// `%-Ns ` when the column has a width, bare `%s` otherwise (Ls's format).
fn pad_left_aligned(text: &str, width: usize) -> String {
    if width > 0 {
        format!("{text:<width$} ")
    } else {
        text.to_string()
    }
}

/// `-ls -q`: non-printable characters as `?`.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A left-aligned table with two spaces between columns and no padding after the last:
/// the layout of `-du`.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn add_row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Hadoop's TableListing as `-df` uses it: first column left-justified, the others
/// right-justified, two spaces between columns.
pub fn render_df(rows: &[[String; 5]]) -> String {
    let widths: Vec<usize> =
        (0..5).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = format!("{:<w$}", row[0], w = widths[0]);
        for c in 1..5 {
            line.push_str(&format!("  {:>w$}", row[c], w = widths[c]));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The quota columns of `-count -q`/`-u`: `none`/`inf` when no quota is set.
fn quota_columns(quota: i64, used_names: u64, space_quota: i64, space_consumed: u64, human: bool) -> String {
    let (quota_text, quota_left) = if quota > 0 {
        (size(quota, human), size(quota - used_names as i64, human))
    } else {
        ("none".to_string(), "inf".to_string())
    };
    let (space_text, space_left) = if space_quota > 0 {
        (size(space_quota, human), size(space_quota - space_consumed as i64, human))
    } else {
        ("none".to_string(), "inf".to_string())
    };
    format!("{quota_text:>12} {quota_left:>15} {space_text:>15} {space_left:>15} ")
}

/// `-count [-q]` columns of one path, before the path itself.
pub fn count_columns(summary: &ContentSummary, with_quota: bool, human: bool) -> String {
    let mut out = String::new();
    if with_quota {
        let names = summary.directory_count + summary.file_count;
        out.push_str(&quota_columns(
            summary.quota,
            names,
            summary.space_quota,
            summary.space_consumed,
            human,
        ));
    }
    out.push_str(&format!(
        "{:>12} {:>12} {:>18} ",
        size(summary.directory_count as i64, human),
        size(summary.file_count as i64, human),
        size(summary.length as i64, human)
    ));
    out
}

/// `-count -u` columns of one path.
pub fn quota_usage_columns(usage: &QuotaUsage, human: bool) -> String {
    quota_columns(usage.quota, usage.file_and_directory_count, usage.space_quota, usage.space_consumed, human)
}

/// `-count -v` header.
pub fn count_header(with_quota: bool, usage_only: bool) -> String {
    let quota =
        format!("{:>12} {:>15} {:>15} {:>15} ", "QUOTA", "REM_QUOTA", "SPACE_QUOTA", "REM_SPACE_QUOTA");
    let summary = format!("{:>12} {:>12} {:>18} ", "DIR_COUNT", "FILE_COUNT", "CONTENT_SIZE");
    match (usage_only, with_quota) {
        (true, _) => format!("{quota}PATHNAME"),
        (false, true) => format!("{quota}{summary}PATHNAME"),
        (false, false) => format!("{summary}PATHNAME"),
    }
}

/// `-stat` output for one path: `%a %A %b %F %g %n %o %r %u %x %X %y %Y`, `%%`; an
/// unknown specifier prints its letter, a trailing `%` nothing (as Stat.java).
pub fn stat_line(format: &str, stat: &FileStatus) -> String {
    let time = |ms: u64| ringfs_client::time::format_local(ms as i64, "%Y-%m-%d %H:%M:%S");
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else { break };
        match spec {
            'a' => out.push_str(&format!("{:o}", stat.permission)),
            'A' => out.push_str(&permission_string(stat.permission)),
            'b' => out.push_str(&stat.length.to_string()),
            'F' => out.push_str(match stat.kind {
                FileKind::Directory => "directory",
                FileKind::File => "regular file",
                FileKind::Symlink => "symlink",
            }),
            'g' => out.push_str(&stat.group),
            'n' => out.push_str(stat.name()),
            'o' => out.push_str(&stat.block_size.to_string()),
            'r' => out.push_str(&stat.replication.to_string()),
            'u' => out.push_str(&stat.owner),
            'x' => out.push_str(&time(stat.access_time_ms)),
            'X' => out.push_str(&stat.access_time_ms.to_string()),
            'y' => out.push_str(&time(stat.modification_time_ms)),
            'Y' => out.push_str(&stat.modification_time_ms.to_string()),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn status(path: &str, kind: FileKind, length: u64) -> FileStatus {
        FileStatus {
            path: path.to_string(),
            kind,
            length,
            permission: if kind == FileKind::Directory { 0o755 } else { 0o644 },
            owner: "root".to_string(),
            group: "supergroup".to_string(),
            modification_time_ms: 1_795_278_605_123,
            access_time_ms: 1_795_278_600_000,
            replication: if kind == FileKind::File { 3 } else { 0 },
            block_size: if kind == FileKind::File { 134_217_728 } else { 0 },
            file_id: 16386,
            children_count: 0,
            symlink_target: None,
            has_acl: false,
            is_encrypted: false,
            is_erasure_coded: false,
        }
    }

    #[test]
    fn permissions() {
        assert_eq!(permission_string(0o755), "rwxr-xr-x");
        assert_eq!(permission_string(0o640), "rw-r-----");
        assert_eq!(permission_string(0o1777), "rwxrwxrwt");
        assert_eq!(permission_string(0o1770), "rwxrwx--T");
        assert_eq!(permission_string(0), "---------");
    }

    #[test]
    fn human_sizes_like_hadoop() {
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(1023), "1023");
        assert_eq!(human_size(1024), "1 K");
        assert_eq!(human_size(4096), "4 K");
        assert_eq!(human_size(5000), "4.9 K");
        assert_eq!(human_size(1100), "1.1 K");
        // 1.25 K exactly: Java's %.1f rounds half up.
        assert_eq!(human_size(1280), "1.3 K");
        assert_eq!(human_size(123_456_789_012), "115.0 G");
        assert_eq!(human_size(270_553_174_016), "252.0 G");
        // Rounds up to 1024.0 K: shown in the next unit.
        assert_eq!(human_size(1_048_575), "1.0 M");
        assert_eq!(human_size(134_217_728), "128 M");
        assert_eq!(human_size(-2048), "-2 K");
    }

    #[test]
    fn byte_descriptions() {
        assert_eq!(long_to_string(0, "B", 2), "0 B");
        assert_eq!(long_to_string(4096, "B", 2), "4 KB");
        assert_eq!(long_to_string(811_659_522_048, "B", 2), "755.92 GB");
        assert_eq!(long_to_string(24_187_863, "B", 2), "23.07 MB");
    }

    #[test]
    fn java_fixed_rounds_half_up_on_shortest_digits() {
        assert_eq!(java_fixed(0.125, 2), "0.13");
        assert_eq!(java_fixed(2.5, 0), "3");
        assert_eq!(java_fixed(0.0, 2), "0.00");
        assert_eq!(java_fixed(99.996, 2), "100.00");
        assert_eq!(java_fixed(0.0001, 2), "0.00");
        assert_eq!(java_fixed(123.456, 1), "123.5");
        assert_eq!(java_fixed(f64::from(0.1f32), 2), "0.10");
        assert_eq!(java_fixed(1e21, 0), "1000000000000000000000");
        assert_eq!(java_fixed(f64::NAN, 2), "NaN");
    }

    #[test]
    fn percents() {
        assert_eq!(percent(20_316_700_672.0 / 270_553_174_016.0), "8%");
        assert_eq!(percent(f64::NAN), "NaN%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn ls_lines_match_hadoop_columns() {
        let mut widths = LsWidths::default();
        let file = status("/d1/a.txt", FileKind::File, 6);
        let dir = status("/d1/sub", FileKind::Directory, 0);
        widths.adjust([&file, &dir]);
        let style = LsStyle::default();
        let date = ringfs_client::time::format_local(1_795_278_605_123, "%Y-%m-%d %H:%M");
        assert_eq!(
            ls_line(&file, "/d1/a.txt", &widths, style),
            format!("-rw-r--r--   3 root supergroup          6 {date} /d1/a.txt")
        );
        assert_eq!(
            ls_line(&dir, "/d1/sub", &widths, style),
            format!("drwxr-xr-x   - root supergroup          0 {date} /d1/sub")
        );
        let big = status("/big", FileKind::File, 123_456_789_012);
        widths.adjust([&big]);
        let human = LsStyle { human: true, ..style };
        assert_eq!(
            ls_line(&big, "/big", &widths, human),
            format!("-rw-r--r--   3 root supergroup      115.0 G {date} /big")
        );
    }

    #[test]
    fn du_table_pads_all_but_the_last_column() {
        let mut table = Table::default();
        table.add_row(vec!["0".into(), "0".into(), "d2/small".into()]);
        table.add_row(vec!["123456789012".into(), "123456789012".into(), "d2/sparse".into()]);
        assert_eq!(
            table.render(),
            "0             0             d2/small\n123456789012  123456789012  d2/sparse\n"
        );
    }

    #[test]
    fn df_table_justification() {
        let rows = [
            ["Filesystem", "Size", "Used", "Available", "Use%"].map(String::from),
            ["file:///", "270553174016", "20316700672", "250236473344", "8%"].map(String::from),
        ];
        assert_eq!(
            render_df(&rows),
            "Filesystem          Size         Used     Available  Use%\n\
             file:///    270553174016  20316700672  250236473344    8%\n"
        );
    }

    #[test]
    fn count_columns_match_hadoop() {
        let summary = ContentSummary {
            length: 5006,
            file_count: 3,
            directory_count: 2,
            quota: -1,
            space_consumed: 5006,
            space_quota: -1,
        };
        assert_eq!(
            format!("{}d1", count_columns(&summary, false, false)),
            "           2            3               5006 d1"
        );
        assert_eq!(
            format!("{}d1", count_columns(&summary, true, false)),
            "        none             inf            none             inf            2            3               5006 d1"
        );
        assert_eq!(
            count_header(true, false),
            "       QUOTA       REM_QUOTA     SPACE_QUOTA REM_SPACE_QUOTA    DIR_COUNT   FILE_COUNT       CONTENT_SIZE PATHNAME"
        );
        assert_eq!(count_header(false, false), "   DIR_COUNT   FILE_COUNT       CONTENT_SIZE PATHNAME");
        let many = ContentSummary { file_count: 1100, directory_count: 1, length: 0, ..summary };
        assert_eq!(count_columns(&many, false, true), "           1        1.1 K                  0 ");
        let limited = ContentSummary { quota: 10, space_quota: 1 << 20, space_consumed: 1024, ..summary };
        assert_eq!(
            quota_usage_columns_of(&limited),
            "          10               5         1048576         1047552 "
        );
    }

    fn quota_usage_columns_of(summary: &ContentSummary) -> String {
        quota_columns(
            summary.quota,
            summary.directory_count + summary.file_count,
            summary.space_quota,
            summary.space_consumed,
            false,
        )
    }

    #[test]
    fn stat_specifiers() {
        let file = status("/d1/a.txt", FileKind::File, 6);
        let time = ringfs_client::time::format_local(1_795_278_605_123, "%Y-%m-%d %H:%M:%S");
        assert_eq!(stat_line("%y", &file), time);
        assert_eq!(
            stat_line("%n:%b:%F:%g:%o:%r:%u:%Y:%a:%A:%X", &file),
            "a.txt:6:regular file:supergroup:134217728:3:root:1795278605123:644:rw-r--r--:1795278600000"
        );
        assert_eq!(stat_line("%b %%  %z \\n", &file), "6 %  z \\n");
        assert_eq!(stat_line("trailing %", &file), "trailing ");
        let dir = status("/d1", FileKind::Directory, 0);
        assert_eq!(stat_line("%F %r %o", &dir), "directory 0 0");
    }
}
