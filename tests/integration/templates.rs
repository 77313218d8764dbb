//! `weft new`: each language's template, written into a folder outside the
//! repository, builds with the commands its README gives and serves an
//! echo with the README's `weft serve` line.

use std::path::Path;
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

async fn a_new_project_builds_outside_the_repository_and_serves(language: &str) {
    let parent = scratch(&format!("templates-{language}"));
    std::fs::create_dir_all(&parent).unwrap();
    let name = format!("my{language}");
    let parent_arg = parent.display().to_string();
    let (status, stderr) =
        run_weft(&["new", &name, "--lang", language, "--dir", &parent_arg]).await;
    assert!(status.success(), "{stderr}");
    let project = parent.join(&name);
    assert!(!project.starts_with(env!("CARGO_MANIFEST_DIR")));
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();

    let build = commands(&readme, "## Build").join("\n");
    let output = tokio::time::timeout(
        BUILD_TIMEOUT,
        Command::new("sh")
            .args(["-e", "-c", &build])
            .current_dir(&project)
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
    weft.signal(libc::SIGTERM);
    assert!(weft.wait().await.0.success());
}

in_each_language!(a_new_project_builds_outside_the_repository_and_serves: rust => "rust", python => "python", c => "c", js => "js");

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
