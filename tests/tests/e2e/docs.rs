//! The manual against the binaries: every flag and subcommand that `--help` lists is in the
//! command-line reference, so a flag cannot be added without its documentation.

use std::process::Command;

use integration_tests::{bin, output};

use crate::support::repo;

/// The flags (`--name`) and subcommands that `binary [sub] --help` lists.
fn help(binary: &str, sub: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut cmd = Command::new(bin(binary));
    cmd.args(sub).arg("--help");
    let (status, stdout, stderr) = output(&mut cmd);
    assert!(status.success(), "{binary} {sub:?} --help: {stderr}");
    let (mut flags, mut subs) = (Vec::new(), Vec::new());
    let mut in_commands = false;
    for line in stdout.lines() {
        if !line.starts_with(' ') {
            in_commands = line.starts_with("Commands:");
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        if in_commands {
            if first != "help" {
                subs.push(first.to_string());
            }
        } else if let Some(flag) = first
            .starts_with('-')
            .then(|| {
                line.split(|c: char| c.is_whitespace() || c == ',')
                    .find(|w| w.starts_with("--"))
            })
            .flatten()
        {
            flags.push(flag.to_string());
        }
    }
    (flags, subs)
}

#[test]
fn every_flag_of_every_command_is_in_the_reference() {
    let reference = std::fs::read_to_string(repo().join("docs/reference/cli.md")).unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for binary in ["coordinator", "worker"] {
        let (flags, subs) = help(binary, None);
        assert!(!flags.is_empty() && !subs.is_empty(), "{binary} --help");
        let mut all = vec![(None, flags)];
        for sub in &subs {
            if !reference.contains(&format!("`{binary} {sub}")) {
                missing.push(format!("the command `{binary} {sub}`"));
            }
            all.push((Some(sub.as_str()), help(binary, Some(sub)).0));
        }
        for (sub, flags) in all {
            for flag in flags {
                checked += 1;
                if !reference.contains(&format!("`{flag}")) {
                    missing.push(format!("{binary} {} {flag}", sub.unwrap_or("")));
                }
            }
        }
    }
    assert!(
        checked > 60,
        "only {checked} flags found: is the --help parser still right?"
    );
    assert!(
        missing.is_empty(),
        "docs/reference/cli.md lacks: {}",
        missing.join(", ")
    );
}
