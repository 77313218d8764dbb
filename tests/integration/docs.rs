//! The repository's own documents: every relative link and `#anchor` in
//! its markdown resolves, README stays the front door, the licence is the
//! one Cargo.toml names, the recipes that talk to the chat by hand send the
//! line ends it reads, and docs/cluster.md quotes the cluster test's HAProxy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The checkout, from this test binary's `target/`.
fn root() -> PathBuf {
    weft_tests::target_dir()
        .parent()
        .expect("target/ is in the checkout")
        .to_path_buf()
}

/// Every markdown file of the repository's own: README.md and docs/, and
/// any other the repository keeps (not under target/ or a dependency).
fn markdown_files() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.')
                    && !["target", "node_modules", "build"].contains(&name.as_str())
                {
                    folders.push(path);
                }
            } else if name.ends_with(".md") && !name.contains(".egg-info") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The text of `markdown` outside fenced code blocks, line by line.
fn prose(markdown: &str) -> Vec<&str> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// Every `[text](target)` link in `markdown`'s prose, inline code aside.
fn links(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(markdown) {
        // Inline code is not a link: drop what lies between backticks.
        let text: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = text.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    found
}

/// The anchors GitHub gives `markdown`'s headings: lower case, spaces to
/// `-`, punctuation other than `-` and `_` dropped, repeats numbered.
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    prose(markdown)
        .into_iter()
        .filter(|line| line.starts_with('#'))
        .map(|line| {
            let title = line.trim_start_matches('#').trim();
            let slug: String = title
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            let count = seen.entry(slug.clone()).or_default();
            let anchor = match *count {
                0 => slug.clone(),
                n => format!("{slug}-{n}"),
            };
            *count += 1;
            anchor
        })
        .collect()
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let files = markdown_files();
    assert!(files.len() > 10, "the docs are found: {files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", file.display()));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                if !headings.iter().any(|h| h == anchor) {
                    broken.push(format!("{}: {link}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn readme_is_the_front_door_and_the_reference_is_in_docs() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md is {lines} lines: keep the reference in docs/"
    );
    for command in ["cargo xtask serve", "cargo xtask test"] {
        assert!(readme.contains(command), "README gives `{command}`");
    }
    for page in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        let name = page.file_name().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("(docs/{name})")),
            "README links docs/{name}"
        );
    }
}

#[test]
fn the_licence_is_the_one_cargo_toml_names() {
    let root = root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""), "{manifest}");
    let licence = std::fs::read_to_string(root.join("LICENSE")).expect("a LICENSE file");
    assert!(
        licence.contains("Apache License") && licence.contains("Version 2.0, January 2004"),
        "LICENSE is the Apache License 2.0"
    );
    assert!(
        licence.contains("END OF TERMS AND CONDITIONS"),
        "the whole text"
    );
}

/// The chat reads lines ending in `\r\n`, as Twisted's LineReceiver does,
/// and ignores a bare `\n`: every recipe that talks to it by hand with
/// `nc` or `socat` must send CRLF (`nc -C`, `socat -,crlf`).
#[test]
fn recipes_that_talk_to_the_chat_send_crlf() {
    let mut wrong = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let to_chat = line.contains(" 1025") || line.contains("chat.sock");
            let by_hand = line.contains("nc ") || line.contains("socat ");
            if !(to_chat && by_hand) || line.contains("weft serve") {
                continue;
            }
            let crlf = line.contains("nc -C") || line.contains(",crlf");
            if !crlf {
                wrong.push(format!("{}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "chat recipes without CRLF:\n{}",
        wrong.join("\n")
    );
}

/// The docs say what they point at: this file's own helpers agree with
/// GitHub on a heading with code and punctuation in it.
#[test]
fn anchors_are_made_as_github_makes_them() {
    let headings = anchors(
        "# Starting a guest of your own: `weft new`\n## Metrics and health\n## Metrics and health\n",
    );
    assert_eq!(
        headings,
        [
            "starting-a-guest-of-your-own-weft-new",
            "metrics-and-health",
            "metrics-and-health-1"
        ]
    );
    assert_eq!(
        links("see [a](docs/a.md#x) and `[b](not/a/link.md)` and [c](#y)"),
        ["docs/a.md#x", "#y"]
    );
    assert!(Path::new(&root()).join("docs").is_dir());
}

/// docs/cluster.md gives operators the HAProxy configuration the cluster
/// test runs, quoted whole, so that the two cannot drift apart.
#[test]
fn the_cluster_page_quotes_the_haproxy_config_the_test_runs() {
    let root = root();
    let config = std::fs::read_to_string(root.join("tests/haproxy/cluster.cfg")).unwrap();
    let page = std::fs::read_to_string(root.join("docs/cluster.md")).unwrap();
    assert!(
        page.contains(&format!("```haproxy\n{config}```\n")),
        "docs/cluster.md quotes tests/haproxy/cluster.cfg exactly, in a ```haproxy block"
    );
}
