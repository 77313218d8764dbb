//! Each `weft` command takes its own flags and says what it does: a flag
//! of another command is an error, not ignored; `serve --help` names every
//! endpoint; completions and the man page come from the same definitions.

use weft_tests::run_weft;

/// `weft ARGS`: its status, stdout and stderr.
async fn weft(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(weft_tests::weft_binary())
        .args(args)
        .output()
        .await
        .expect("weft runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flag_of_another_command_is_refused() {
    let (status, stderr) = run_weft(&[
        "cache",
        "prune",
        "--deadline",
        "1ms",
        "--workers",
        "9",
        "--admin",
        "tcp:1",
    ])
    .await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("unexpected argument '--deadline'"),
        "{stderr}"
    );
    let (ok, help, _) = weft(&["new", "--help"]).await;
    assert!(ok);
    for serving in [
        "--memory",
        "--deadline",
        "--admin",
        "--cache-dir",
        "--workers",
    ] {
        assert!(
            !help.contains(serving),
            "weft new --help lists {serving}:\n{help}"
        );
    }
    assert!(
        help.contains("--lang") && help.contains("--vendor"),
        "{help}"
    );
    let (ok, help, _) = weft(&["check", "--help"]).await;
    assert!(ok);
    assert!(
        help.contains("--memory") && !help.contains("--admin"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_help_names_every_endpoint_type() {
    let (ok, help, _) = weft(&["serve", "--help"]).await;
    assert!(ok);
    for endpoint in ["tcp:", "tcp6:", "ssl:", "unix:", "udp:"] {
        assert!(help.contains(endpoint), "no {endpoint} in:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_and_the_man_page_cover_every_command() {
    for (shell, marker) in [
        ("bash", "_weft()"),
        ("zsh", "#compdef weft"),
        ("fish", "complete -c weft"),
    ] {
        let (ok, script, stderr) = weft(&["completions", shell]).await;
        assert!(ok, "{shell}: {stderr}");
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["serve", "check", "cache", "new"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let (ok, page, stderr) = weft(&["man"]).await;
    assert!(ok, "{stderr}");
    assert!(page.contains(".TH weft 1"), "{page}");
    for command in ["serve", "check", "cache", "new", "completions"] {
        assert!(page.contains(command), "the man page names {command}");
    }
}
