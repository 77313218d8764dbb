//! `weft new`: each language's template, written into a folder outside the
//! repository, builds with the commands its README gives and serves an
//! echo with the README's `weft serve` line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use weft_tests::{WeftProcess, connect, read_exact, run_weft, scratch};

/// How long a template's build may take: a Rust one compiles the SDK and
/// its dependencies afresh, in the project's own target folder.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The lines of the README's first `sh` block after `heading`.
fn commands(readme: &str, heading: &str) -> Vec<String> {
    readme
        .split(heading)
        .nth(1)
        .and_then(|section| section.split("```sh\n").nth(1))
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("no sh block under {heading} in:\n{readme}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The weft checkout these tests run in.
fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// `weft new NAME --lang LANGUAGE OPTIONS...` in a scratch folder: the project's folder.
async fn new_project(name: &str, language: &str, options: &[&str]) -> PathBuf {
    let parent = scratch(&format!("templates-{name}"));
    std::fs::create_dir_all(&parent).unwrap();
    let parent_arg = parent.display().to_string();
    let mut args = vec!["new", name, "--lang", language, "--dir", &parent_arg];
    args.extend(options);
    let (status, stderr) = run_weft(&args).await;
    assert!(status.success(), "{stderr}");
    let project = parent.join(name);
    assert!(!project.starts_with(checkout()));
    project
}

async fn a_new_project_builds_outside_the_repository_and_serves(language: &str) {
    let project = new_project(&format!("my{language}"), language, &[]).await;
    builds_and_serves(&project).await;
}

in_each_language!(a_new_project_builds_outside_the_repository_and_serves: rust => "rust", python => "python", c => "c", js => "js");

#[tokio::test(flavor = "multi_thread")]
async fn a_vendored_rust_project_builds_without_the_checkout() {
    let project = new_project("myvendored", "rust", &["--vendor"]).await;
    assert!(project.join("weft/guest-sdk/src/lib.rs").is_file());
    assert!(project.join("weft/guest-sdk/datagram/src/lib.rs").is_file());
    assert!(project.join("weft/wit/weft.wit").is_file());
    // Nothing in the project leads back to the checkout, so the build below
    // uses the copy alone.
    let checkout = checkout().display().to_string();
    for file in files_below(&project) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(&checkout),
            "{} names {checkout}",
            file.display()
        );
    }
    builds_and_serves(&project).await;
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .flat_map(|path| match path.is_dir() {
            true => files_below(&path),
            false => vec![path],
        })
        .collect()
}

/// Run the build block of the project's README, then its `weft serve` line,
/// and echo through the result.
async fn builds_and_serves(project: &Path) {
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    // It says what a trap costs, and what to do about it.
    assert!(
        readme.contains("closes every connection of that worker and loses the instance's state")
            && readme.contains(",isolation=connection"),
        "{readme}"
    );

    let build = commands(&readme, "## Build").join("\n");
    let output = tokio::time::timeout(
        BUILD_TIMEOUT,
        Command::new("sh")
            .args(["-e", "-c", &build])
            .current_dir(project)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{build} took more than {BUILD_TIMEOUT:?}"))
    .expect("sh runs");
    assert!(
        output.status.success(),
        "{build}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !project.join("__pycache__").exists(),
        "no bytecode left behind"
    );

    let serve = commands(&readme, "## Serve");
    let service = serve[0]
        .strip_prefix("weft serve ")
        .unwrap_or_else(|| panic!("a weft serve line: {serve:?}"))
        .replace("@tcp:1234", "@tcp:0:interface=127.0.0.1");
    let service = Path::new(&project).join(service).display().to_string();
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let mut client = connect(addrs[0]).await;
    client.write_all(b"hello from a new project").await.unwrap();
    assert_eq!(
        read_exact(&mut client, 24).await,
        b"hello from a new project"
    );
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn weft_new_refuses_a_bad_name_and_an_existing_folder() {
    let parent = scratch("templates-refused");
    std::fs::create_dir_all(parent.join("taken")).unwrap();
    let parent = parent.display().to_string();
    let (status, stderr) = run_weft(&["new", "Bad-Name", "--lang", "rust", "--dir", &parent]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("`Bad-Name` cannot name a guest"),
        "{stderr}"
    );
    let (status, stderr) = run_weft(&["new", "taken", "--lang", "c", "--dir", &parent]).await;
    assert!(!status.success());
    assert!(stderr.contains("taken already exists"), "{stderr}");
    let (status, stderr) = run_weft(&[
        "new", "notrust", "--lang", "python", "--dir", &parent, "--vendor",
    ])
    .await;
    assert!(!status.success());
    assert!(stderr.contains("--vendor copies the Rust SDK"), "{stderr}");
    assert!(!Path::new(&parent).join("notrust").exists());

    // A checkout whose SDK inherits what its workspace lacks: the copy fails
    // with the reason, and leaves no half-made project.
    let broken = scratch("templates-broken-checkout");
    std::fs::create_dir_all(broken.join("guest-sdk/src")).unwrap();
    std::fs::create_dir_all(broken.join("xtask")).unwrap();
    std::fs::write(broken.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::write(
        broken.join("guest-sdk/Cargo.toml"),
        "[package]\nname = \"weft-guest\"\nversion.workspace = true\n",
    )
    .unwrap();
    let (status, stderr) = run_weft(&[
        "new",
        "halfmade",
        "--lang",
        "rust",
        "--dir",
        &parent,
        "--vendor",
        "--checkout",
        &broken.display().to_string(),
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("the workspace has no package.version"),
        "{stderr}"
    );
    assert!(!Path::new(&parent).join("halfmade").exists());
    let (status, stderr) = run_weft(&[
        "new",
        "fine",
        "--lang",
        "c",
        "--dir",
        &parent,
        "--checkout",
        "/nonexistent",
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("/nonexistent is not a weft checkout"),
        "{stderr}"
    );
}

/// A name the Python build would refuse (one that hides a module of weft's
/// SDK or of componentize-py's bindings) is refused by `weft new` itself,
/// before anything is written; the same name is fine in another language.
#[tokio::test(flavor = "multi_thread")]
async fn weft_new_refuses_a_python_name_the_build_would_refuse() {
    let parent = scratch("templates-python-names");
    std::fs::create_dir_all(&parent).unwrap();
    let parent_arg = parent.display().to_string();
    let sdk = weft_tests::target_dir().join("../guest-sdk/python");
    let mut taken: Vec<String> = vec!["wit_world".into(), "componentize_py_types".into()];
    // What the SDK puts on the build's path beside the guest.
    taken.push("protocol".into());
    assert!(sdk.join("protocol.py").is_file() && sdk.join("weft").is_dir());
    taken.push("weft".into());
    // And Twisted, which it bundles.
    taken.push("twisted".into());
    for name in &taken {
        let (status, stderr) =
            run_weft(&["new", name, "--lang", "python", "--dir", &parent_arg]).await;
        assert!(!status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("`{name}` cannot name a Python guest")),
            "{name}: {stderr}"
        );
        assert!(!parent.join(name).exists(), "{name}: nothing is written");
    }
    let (status, stderr) =
        run_weft(&["new", "protocol", "--lang", "c", "--dir", &parent_arg]).await;
    assert!(status.success(), "{stderr}");
}
