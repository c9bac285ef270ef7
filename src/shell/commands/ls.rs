//! `-ls [-C] [-d] [-h] [-q] [-R] [-t] [-S] [-r] [-u] <path> ...`

use std::future::Future;
use std::pin::Pin;

use super::super::format::{ls_line, LsStyle, LsWidths};
use super::super::options::{CommandFormat, Opts};
use super::super::paths::PathItem;
use super::super::{children, Shell, ShellError};
use super::expand_all;

struct Listing {
    style: LsStyle,
    widths: LsWidths,
    path_only: bool,
    directories_as_files: bool,
    recursive: bool,
    by_time: bool,
    by_size: bool,
    reverse: bool,
}

pub async fn ls(shell: &mut Shell, mut args: Vec<String>) -> Result<i32, ShellError> {
    let format = CommandFormat {
        min_args: 0,
        max_args: usize::MAX,
        flags: &["C", "d", "h", "q", "R", "t", "S", "r", "u", "e"],
        valued: &[],
    };
    let opts: Opts = format.parse(&mut args)?;
    if opts.has("e") {
        return Err(ShellError::Usage("-e (erasure coding policies) is not supported by ringfs".to_string()));
    }
    if args.is_empty() {
        args.push(".".to_string());
    }
    let mut listing = Listing {
        style: LsStyle {
            human: opts.has("h"),
            use_access_time: opts.has("u"),
            hide_non_printable: opts.has("q"),
        },
        widths: LsWidths::default(),
        path_only: opts.has("C"),
        directories_as_files: opts.has("d"),
        recursive: opts.has("R"),
        by_time: opts.has("t"),
        by_size: opts.has("S"),
        reverse: opts.has("r"),
    };
    let items = expand_all(shell, &args).await?;
    for item in items {
        let Some(stat) = item.stat.as_ref() else {
            shell.report(&ShellError::not_found(&item.display));
            continue;
        };
        if stat.is_dir() && !listing.directories_as_files {
            if let Err(error) = list_directory(shell, &mut listing, item).await {
                shell.report(&error);
            }
        } else {
            print_items(shell, &mut listing, std::slice::from_ref(&item));
        }
    }
    Ok(0)
}

fn print_items(shell: &mut Shell, listing: &mut Listing, items: &[PathItem]) {
    if !listing.path_only {
        listing.widths.adjust(items.iter().filter_map(|i| i.stat.as_ref()));
    }
    for item in items {
        print_item(shell, listing, item);
    }
}

fn print_item(shell: &mut Shell, listing: &Listing, item: &PathItem) {
    let stat = item.stat.as_ref().expect("listed items exist");
    if listing.path_only {
        let line = if listing.style.hide_non_printable {
            super::super::format::printable(&item.display)
        } else {
            item.display.clone()
        };
        shell.println(&line);
    } else {
        shell.println(&ls_line(stat, &item.display, &listing.widths, listing.style));
    }
}

/// Ls.processPaths for a directory: "Found N items" and a sort unless recursive, the
/// widths adjusted to the batch, then each entry (and its subtree with -R).
fn list_directory<'a>(
    shell: &'a mut Shell,
    listing: &'a mut Listing,
    directory: PathItem,
) -> Pin<Box<dyn Future<Output = Result<(), ShellError>> + 'a>> {
    Box::pin(async move {
        let mut entries = children(shell, &directory).await?;
        if !listing.recursive && !entries.is_empty() {
            if !listing.path_only {
                shell.println(&format!("Found {} items", entries.len()));
            }
            sort_entries(listing, &mut entries);
        }
        if !listing.path_only {
            listing.widths.adjust(entries.iter().filter_map(|i| i.stat.as_ref()));
        }
        for entry in entries {
            print_item(shell, listing, &entry);
            if listing.recursive && entry.is_dir() {
                if let Err(error) = list_directory(shell, listing, entry).await {
                    shell.report(&error);
                }
            }
        }
        Ok(())
    })
}

fn sort_entries(listing: &Listing, entries: &mut [PathItem]) {
    let stat = |item: &PathItem| item.stat.clone().expect("listed items exist");
    entries.sort_by(|a, b| {
        let (sa, sb) = (stat(a), stat(b));
        let primary = if listing.by_time {
            let time = |s: &ringfs_client::FileStatus| {
                if listing.style.use_access_time {
                    s.access_time_ms
                } else {
                    s.modification_time_ms
                }
            };
            time(&sb).cmp(&time(&sa))
        } else if listing.by_size {
            sb.length.cmp(&sa.length)
        } else {
            std::cmp::Ordering::Equal
        };
        let order = primary.then_with(|| a.path.cmp(&b.path));
        if listing.reverse {
            order.reverse()
        } else {
            order
        }
    });
}
