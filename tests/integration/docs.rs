//! The reference in `docs/` cannot drift from the code: every configuration key the parser
//! accepts is documented (and nothing else), every command and option is documented (and
//! nothing else), every link in the README and the docs leads to a file in the repository,
//! and no file refers to anything outside it.

use crate::util::*;
use clap::CommandFactory;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The lines of a markdown file between the heading `heading` (exact line) and the next
/// heading of the same or a higher level (code blocks are not headings).
fn section<'a>(doc: &'a str, heading: &str) -> Option<Vec<&'a str>> {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut lines = doc.lines().skip_while(|l| l.trim_end() != heading);
    lines.next()?;
    let mut fenced = false;
    Some(
        lines
            .take_while(|l| {
                if l.trim_start().starts_with("```") {
                    fenced = !fenced;
                }
                let h = l.chars().take_while(|&c| c == '#').count();
                fenced || !(h > 0 && h <= level && l[h..].starts_with(' '))
            })
            .collect(),
    )
}

/// The first cells of a section's table rows that start with a backquoted name:
/// ``| `key` | ...`` gives `key`.
fn table_keys(lines: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(k, _)| k.to_string())
        .collect()
}

/// The names serde lists in "unknown field `x`, expected one of `a`, `b`" (or "expected `a`
/// or `b`", or "expected `a`").
fn expected_fields(message: &str) -> BTreeSet<String> {
    let Some((_, after)) = message.split_once("expected") else {
        return BTreeSet::new();
    };
    let line = after.lines().next().unwrap_or("");
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

const ACCOUNT: &str = r#"
[[account]]
name = "a"
base_url = "http://127.0.0.1:9/"
#ACCOUNT
[account.oauth2]
token_url = "token"
client_id = "id"
client_auth = "none"
#OAUTH2
[[account.endpoint]]
name = "e"
path = "x"
#ENDPOINT
"#;

const API_KEY_ACCOUNT: &str = r#"
[[account]]
name = "k"
base_url = "http://127.0.0.1:9/"
auth = "api_key"
[account.api_key]
key = "not-a-real-key"
#API_KEY
"#;

/// What the binary says the keys of one table are, by feeding it an unknown key there.
fn keys_accepted_in(marker: &str) -> BTreeSet<String> {
    let dir = tempdir();
    let path = dir.path().join("config.toml");
    let mut config = format!("#TOP\n[daemon]\n#DAEMON\n{ACCOUNT}{API_KEY_ACCOUNT}");
    config = config.replace(marker, "zz_not_a_key = 1");
    write_file(&path, &config);
    let out = run(Some(&path), &["check"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{marker}: {all}");
    assert!(all.contains("zz_not_a_key"), "{marker}: {all}");
    let keys = expected_fields(&all);
    assert!(!keys.is_empty(), "{marker}: no key list in: {all}");
    keys
}

#[test]
fn every_configuration_key_is_documented_and_nothing_else() {
    let doc = read("docs/configuration.md");
    let tables = [
        ("#TOP", "## Top level"),
        ("#DAEMON", "## `[daemon]`"),
        ("#ACCOUNT", "## `[[account]]`"),
        ("#OAUTH2", "## `[account.oauth2]`"),
        ("#API_KEY", "## `[account.api_key]`"),
        ("#ENDPOINT", "## `[[account.endpoint]]`"),
    ];
    let mut problems = Vec::new();
    for (marker, heading) in tables {
        let accepted = keys_accepted_in(marker);
        let Some(lines) = section(&doc, heading) else {
            problems.push(format!("docs/configuration.md has no section `{heading}`"));
            continue;
        };
        let documented = table_keys(&lines);
        for k in accepted.difference(&documented) {
            problems.push(format!(
                "{heading}: key `{k}` is accepted but not documented"
            ));
        }
        for k in documented.difference(&accepted) {
            problems.push(format!(
                "{heading}: key `{k}` is documented but not accepted"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_command_and_option_is_documented_and_nothing_else() {
    let doc = read("docs/cli.md");
    let cli = oauth_poller::cli::Cli::command();
    let mut problems = Vec::new();
    let long = |a: &clap::Arg| a.get_long().map(|l| format!("--{l}"));

    // Global options, in the "Global options" table.
    let globals: BTreeSet<String> = cli.get_arguments().filter_map(long).collect();
    let lines = section(&doc, "## Global options").unwrap_or_default();
    let rows = table_keys(&lines);
    let documented: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect();
    for g in &globals {
        if !documented.contains(g) {
            problems.push(format!("global option {g} is not documented"));
        }
    }
    for d in &documented {
        if !globals.contains(d) && d != "--help" && d != "--version" {
            problems.push(format!(
                "global option {d} is documented but does not exist"
            ));
        }
    }

    // Every command has a `### `name`` section naming each of its options and arguments.
    let commands: BTreeSet<String> = cli
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let headings: BTreeSet<String> = section(&doc, "## Commands")
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_string)
        .collect();
    for h in headings.difference(&commands) {
        problems.push(format!("command `{h}` is documented but does not exist"));
    }
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        let Some(lines) = section(&doc, &format!("### `{name}`")) else {
            problems.push(format!("command `{name}` is not documented"));
            continue;
        };
        let body = lines.join("\n");
        let mut own = BTreeSet::new();
        for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
            let shown = match long(arg) {
                Some(l) => l,
                None => arg
                    .get_value_names()
                    .and_then(|v| v.first())
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| arg.get_id().as_str().to_uppercase()),
            };
            // `--opt` alone, or `--opt VALUE`; not a longer option that starts the same.
            if !body.contains(&format!("`{shown}`")) && !body.contains(&format!("`{shown} ")) {
                problems.push(format!("`{name}`: {shown} is not documented"));
            }
            own.insert(shown);
        }
        // Options in the section's tables must exist.
        for row in table_keys(&lines) {
            let first = row.split_whitespace().next().unwrap_or("");
            if first.starts_with("--") && !own.contains(first) {
                problems.push(format!(
                    "`{name}`: {first} is documented but does not exist"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// GitHub's anchor for a heading: lower case, link targets and punctuation dropped, spaces
/// become hyphens.
fn anchor(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[label](target)` shows as `label`.
    while let Some(i) = rest.find("](") {
        text.push_str(&rest[..i]);
        rest = rest[i..].split_once(')').map_or("", |(_, r)| r);
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(doc: &str) -> BTreeSet<String> {
    prose(doc)
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#').trim()))
        .collect()
}

/// The lines outside fenced code blocks.
fn prose(doc: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    doc.lines().filter(move |l| {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![
        root().join("README.md"),
        root().join("tests/django_inode/README.md"),
    ];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    files
}

#[test]
fn every_link_in_the_readme_and_docs_leads_into_the_repository() {
    let repo = root().canonicalize().unwrap();
    let mut problems = Vec::new();
    for file in markdown_files() {
        let doc = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(root()).unwrap().display().to_string();
        for line in prose(&doc) {
            for piece in line.split("](").skip(1) {
                let Some((target, _)) = piece.split_once(')') else {
                    continue;
                };
                if target.starts_with("http://")
                    || target.starts_with("https://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let (path, fragment) = match target.split_once('#') {
                    Some((p, f)) => (p, Some(f)),
                    None => (target, None),
                };
                let dest = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                let inside = dest
                    .canonicalize()
                    .map(|d| d.starts_with(&repo))
                    .unwrap_or(false);
                if !inside {
                    problems.push(format!(
                        "{shown}: link `{target}` leads to no file of the repository"
                    ));
                    continue;
                }
                if let Some(fragment) = fragment {
                    let text = std::fs::read_to_string(&dest).unwrap_or_default();
                    if !anchors(&text).contains(fragment) {
                        problems.push(format!("{shown}: link `{target}`: no such heading"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_file_refers_to_the_directory_outside_the_repository() {
    // Built at run time so that this file does not contain what it looks for.
    let needles = [format!("..{}shared", '/'), format!("shared{}seeds", '/')];
    let mut problems = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('.') || name == "target" || name == "__pycache__" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            for (i, line) in text.lines().enumerate() {
                if needles.iter().any(|n| line.contains(n.as_str())) {
                    let rel = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
                    problems.push(format!("{rel}:{}: {line}", i + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_anchor_rule_matches_githubs() {
    assert_eq!(anchor("`[account.oauth2]`"), "accountoauth2");
    assert_eq!(
        anchor("Reliability and security"),
        "reliability-and-security"
    );
    assert_eq!(
        anchor("SciNote (Doorkeeper): [`config/scinote.toml`](config/scinote.toml)"),
        "scinote-doorkeeper-configscinotetoml"
    );
}
