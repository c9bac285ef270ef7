//! FsShell's CommandFormat: options are single tokens (`-R`, never `-Rf`) at the front
//! of the arguments, up to the first non-option, `-` (stdin) or `--`; then the count
//! of the remaining arguments is checked.

use std::collections::{HashMap, HashSet};

use super::ShellError;

/// The options a command was given.
#[derive(Debug, Default)]
pub struct Opts {
    flags: HashSet<String>,
    values: HashMap<String, String>,
}

impl Opts {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    pub fn value(&self, option: &str) -> Option<&str> {
        self.values.get(option).map(String::as_str)
    }
}

/// What a command accepts.
pub struct CommandFormat<'a> {
    pub min_args: usize,
    pub max_args: usize,
    pub flags: &'a [&'a str],
    pub valued: &'a [&'a str],
}

impl CommandFormat<'_> {
    /// Takes the options off the front of `args` and checks the argument count.
    pub fn parse(&self, args: &mut Vec<String>) -> Result<Opts, ShellError> {
        let mut opts = Opts::default();
        let pos = 0;
        while pos < args.len() {
            let arg = args[pos].clone();
            if !arg.starts_with('-') || arg == "-" {
                break;
            }
            if arg == "--" {
                args.remove(pos);
                break;
            }
            let opt = &arg[1..];
            if self.flags.contains(&opt) {
                args.remove(pos);
                opts.flags.insert(opt.to_string());
            } else if self.valued.contains(&opt) {
                args.remove(pos);
                let value = if pos < args.len() && args.len() > self.min_args {
                    args.remove(pos)
                } else {
                    String::new()
                };
                if !value.starts_with('-') || value == "-" {
                    opts.values.insert(opt.to_string(), value);
                }
            } else {
                return Err(ShellError::Usage(format!("Illegal option {arg}")));
            }
        }
        self.check_count(args.len())?;
        Ok(opts)
    }

    pub fn check_count(&self, count: usize) -> Result<(), ShellError> {
        if count < self.min_args {
            return Err(ShellError::Usage(format!(
                "Not enough arguments: expected {} but got {count}",
                self.min_args
            )));
        }
        if count > self.max_args {
            return Err(ShellError::Usage(format!(
                "Too many arguments: expected {} but got {count}",
                self.max_args
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_stop_at_first_argument() {
        let format = CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["R", "h"], valued: &[] };
        let mut list = args(&["-R", "/a", "-h"]);
        let opts = format.parse(&mut list).unwrap();
        assert!(opts.has("R"));
        assert!(!opts.has("h"));
        assert_eq!(list, args(&["/a", "-h"]));
    }

    #[test]
    fn combined_flags_are_illegal_like_hadoop() {
        let format = CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["r", "f"], valued: &[] };
        let error = format.parse(&mut args(&["-rf", "/a"])).unwrap_err();
        assert_eq!(error.message(), "Illegal option -rf");
    }

    #[test]
    fn counts_are_checked() {
        let format = CommandFormat { min_args: 2, max_args: 2, flags: &[], valued: &[] };
        assert_eq!(
            format.parse(&mut args(&["a"])).unwrap_err().message(),
            "Not enough arguments: expected 2 but got 1"
        );
        assert_eq!(
            format.parse(&mut args(&["a", "b", "c"])).unwrap_err().message(),
            "Too many arguments: expected 2 but got 3"
        );
    }

    #[test]
    fn stdin_dash_and_double_dash_end_options() {
        let format = CommandFormat { min_args: 1, max_args: usize::MAX, flags: &["f"], valued: &["s"] };
        let mut list = args(&["-f", "-", "/x"]);
        assert!(format.parse(&mut list).unwrap().has("f"));
        assert_eq!(list, args(&["-", "/x"]));
        let mut list = args(&["-s", "5", "--", "-weird"]);
        let opts = format.parse(&mut list).unwrap();
        assert_eq!(opts.value("s"), Some("5"));
        assert_eq!(list, args(&["-weird"]));
    }
}
