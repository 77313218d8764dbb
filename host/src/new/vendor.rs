//! `weft new --lang rust --vendor`: a copy of the checkout's Rust SDK and
//! the WIT it is generated from, inside the new project, with the settings
//! the SDK inherits from weft's workspace written out, so the project
//! builds without the checkout.

use std::path::Path;

use anyhow::Context as _;
use toml::{Table, Value};

use super::write;

/// The project's folder for the copy. Below it the checkout's layout is
/// kept, so the SDK finds its WIT at `../wit` as it does at home.
pub const FOLDER: &str = "weft";

/// The SDK crates, by their folder in the checkout: the stream SDK the
/// template uses, and the datagram one a UDP guest would.
const CRATES: [&str; 2] = ["guest-sdk", "guest-sdk/datagram"];

/// Copy the SDK crates and the current WIT from `checkout` into
/// `project/weft/`.
pub fn vendor(checkout: &Path, project: &Path) -> anyhow::Result<()> {
    let into = project.join(FOLDER);
    let workspace = read_toml(&checkout.join("Cargo.toml"))?;
    for krate in CRATES {
        let manifest = checkout.join(krate).join("Cargo.toml");
        let standalone = standalone(read_toml(&manifest)?, &workspace)
            .with_context(|| format!("cannot copy {}", manifest.display()))?;
        write(&into.join(krate).join("Cargo.toml"), &standalone)?;
        copy_tree(
            &checkout.join(krate).join("src"),
            &into.join(krate).join("src"),
        )?;
    }
    // The current contract, its dependencies and the standard interfaces
    // the SDK binds on their own (wit/standard: wasi:keyvalue draft2);
    // the frozen earlier versions (wit/v0.*) are the host's business, not
    // a guest's.
    let wit = checkout.join("wit");
    for entry in read_dir(&wit)? {
        let path = entry.path();
        if path.extension().is_some_and(|extension| extension == "wit") {
            copy_file(&path, &into.join("wit").join(entry.file_name()))?;
        }
    }
    copy_tree(&wit.join("deps"), &into.join("wit").join("deps"))?;
    copy_tree(&wit.join("standard"), &into.join("wit").join("standard"))?;
    write(&into.join("README.md"), &readme(&wit)?)
}

/// `manifest` with every `workspace = true` replaced by what `workspace`
/// (the checkout's root manifest) says, as `cargo package` does.
fn standalone(mut manifest: Table, workspace: &Table) -> anyhow::Result<String> {
    let inherited = |section: &str| {
        workspace
            .get("workspace")
            .and_then(|table| table.get(section))
            .and_then(Value::as_table)
    };
    if let Some(package) = manifest.get_mut("package").and_then(Value::as_table_mut) {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = inherited("package")
                    .and_then(|package| package.get(key))
                    .with_context(|| format!("the workspace has no package.{key}"))?
                    .clone();
            }
        }
    }
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(dependencies) = manifest.get_mut(section).and_then(Value::as_table_mut) else {
            continue;
        };
        for (name, value) in dependencies.iter_mut() {
            if inherits(value) {
                let from_workspace = inherited("dependencies")
                    .and_then(|dependencies| dependencies.get(name))
                    .with_context(|| format!("the workspace has no dependency {name}"))?;
                *value = dependency(name, from_workspace, value)?;
            }
        }
    }
    if manifest.get("lints").is_some_and(inherits) {
        let lints = inherited("lints").context("the workspace has no lints")?;
        manifest.insert("lints".into(), Value::Table(lints.clone()));
    }
    Ok(toml::to_string(&manifest)?)
}

/// A member's `name = { workspace = true, ... }` resolved: the workspace's
/// entry, plus the member's own keys (its features add to the workspace's).
fn dependency(name: &str, from_workspace: &Value, member: &Value) -> anyhow::Result<Value> {
    let mut resolved = match from_workspace {
        Value::String(version) => Table::from_iter([("version".into(), version.clone().into())]),
        Value::Table(table) => table.clone(),
        other => anyhow::bail!("the workspace's dependency {name} is {other}, not a version"),
    };
    // A path would be relative to the checkout, which the copy must not need.
    if resolved.contains_key("path") {
        anyhow::bail!("the workspace's dependency {name} is a path, which a copy cannot take");
    }
    for (key, value) in member.as_table().into_iter().flatten() {
        match (key.as_str(), resolved.get_mut(key)) {
            ("workspace", _) => {}
            ("features", Some(Value::Array(features))) => {
                features.extend(value.as_array().into_iter().flatten().cloned());
            }
            _ => {
                resolved.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(match resolved.get("version") {
        Some(version) if resolved.len() == 1 => version.clone(),
        _ => Value::Table(resolved),
    })
}

/// `key = { workspace = true }` or `key.workspace = true`.
fn inherits(value: &Value) -> bool {
    value.get("workspace").and_then(Value::as_bool) == Some(true)
}

/// What the copy is, for whoever finds it in the project.
fn readme(wit: &Path) -> anyhow::Result<String> {
    let contract = std::fs::read_to_string(wit.join("weft.wit"))
        .with_context(|| format!("cannot read {}", wit.join("weft.wit").display()))?;
    let package = contract
        .lines()
        .find_map(|line| line.trim().strip_prefix("package "))
        .map_or("weft:protocol", |name| name.trim_end_matches(';'));
    Ok(format!(
        "# weft's Rust SDK, copied into this project\n\n\
         `weft new --vendor` (weft {}) copied these from a weft checkout, so the \
         project builds without one:\n\n\
         - `guest-sdk/`: `weft-guest`, for stream guests (`tcp:`, `ssl:`, `unix:`);\n\
         - `guest-sdk/datagram/`: `weft-guest-datagram`, for datagram guests (`udp:`);\n\
         - `wit/`: the contract both are generated from, `{package}`.\n\n\
         To move to a newer weft, replace this folder with the `{FOLDER}/` folder of a \
         project made by that weft's `weft new --lang rust --vendor`.\n",
        env!("CARGO_PKG_VERSION"),
    ))
}

fn read_toml(path: &Path) -> anyhow::Result<Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .and_then(Iterator::collect)
        .with_context(|| format!("cannot read {}", dir.display()))
}

/// Copy the files below `from` into `to`, folders and all.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in read_dir(from)? {
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()))?;
        } else {
            copy_file(&path, &to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(from).with_context(|| format!("cannot read {}", from.display()))?;
    write(to, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKSPACE: &str = r#"
        [workspace.package]
        version = "0.1.0"
        edition = "2024"

        [workspace.dependencies]
        wit-bindgen = "0.63"
        tokio = { version = "1", features = ["net"] }
        local = { path = "local" }
    "#;

    fn resolve(member: &str) -> anyhow::Result<Table> {
        let text = standalone(member.parse().unwrap(), &WORKSPACE.parse().unwrap())?;
        Ok(text.parse().unwrap())
    }

    #[test]
    fn inherited_settings_are_written_out() {
        let manifest = resolve(
            r#"
            [package]
            name = "weft-guest"
            version.workspace = true
            edition = { workspace = true }
            [dependencies]
            httparse = "1"
            wit-bindgen.workspace = true
            tokio = { workspace = true, features = ["time"], optional = true }
            "#,
        )
        .unwrap();
        let expected: Table = r#"
            [package]
            name = "weft-guest"
            version = "0.1.0"
            edition = "2024"
            [dependencies]
            httparse = "1"
            wit-bindgen = "0.63"
            tokio = { version = "1", features = ["net", "time"], optional = true }
            "#
        .parse()
        .unwrap();
        assert_eq!(manifest, expected);
    }

    #[test]
    fn what_the_workspace_lacks_or_holds_by_path_is_refused() {
        let missing = resolve("[package]\nlicense.workspace = true\n").unwrap_err();
        assert_eq!(missing.to_string(), "the workspace has no package.license");
        let path = resolve("[dependencies]\nlocal.workspace = true\n").unwrap_err();
        assert!(path.to_string().contains("is a path"), "{path}");
    }
}
