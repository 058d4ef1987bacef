//! docs/cli.md's section on `oauth-poller-sim` names every option of the binary, and no
//! option that does not exist (the product's commands are checked the same way by
//! oauth-poller's tests).

use clap::Args;
use std::collections::BTreeSet;

#[test]
fn every_option_is_documented_and_nothing_else() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section: Vec<&str> = doc
        .lines()
        .skip_while(|l| *l != "## The simulator: `oauth-poller-sim`")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(
        !section.is_empty(),
        "{path}: no section on oauth-poller-sim"
    );
    // The first cell of each table row: | `--opt VALUE` | ...
    let documented: BTreeSet<String> = section
        .iter()
        .filter_map(|l| l.strip_prefix("| `--"))
        .filter_map(|l| l.split(['`', ' ']).next())
        .map(|o| format!("--{o}"))
        .collect();
    let cmd = oauth_poller_sim::SimulateArgs::augment_args(clap::Command::new("oauth-poller-sim"));
    let options: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect();
    let missing: Vec<_> = options.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&options).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{path}: not documented: {missing:?}; documented but no such option: {extra:?}"
    );
}
