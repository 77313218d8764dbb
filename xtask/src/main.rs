//! weft's developer commands, so that a fresh machine with only rustup and
//! cargo needs one command for each job:
//!
//! - `cargo xtask serve [WEFT ARGS]`: build everything, then run `weft`;
//! - `cargo xtask test`: build everything, then run the whole test suite;
//! - `cargo xtask bench [--short|--smoke]`: build everything, then run weft beside
//!   native tokio/hyper servers and Twisted and print the comparison;
//! - `cargo xtask build`: build the host and every guest (release), the
//!   Python and JavaScript ones with componentize-py and componentize-js,
//!   installed into target/ on first use;
//! - `cargo xtask python PROGRAM.py [OUT.wasm] [-- ARG...]`: build a
//!   Twisted program of one's own as the bundled ones are built.

mod c;
mod debian;
mod js;
mod python;
mod sources;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The guests, built for wasm32-wasip2: the bundled ones and the test ones.
const GUESTS: [&str; 23] = [
    "echo",
    "http-counter",
    "chat",
    "portforward",
    "redis-counter",
    "kv-counter",
    "chat-room",
    "udp-echo",
    "control",
    "hostile",
    "sockets",
    "echo-v0-1",
    "echo-v0-2",
    "echo-v0-2-1",
    "echo-v0-2-2",
    "echo-v0-2-3",
    "echo-v0-2-4",
    "echo-v0-2-5",
    "udp-echo-v0-2-3",
    "reactor",
    "datagrams",
    "kv-standard",
    "kv-draft2",
];

/// The most the compile cache of the tests and the benchmark may hold: one
/// test run compiles about 1 GiB of Python and JavaScript guests (several
/// engine settings each), past weft's default cap, and an evicted entry is
/// compiled again (seconds each).
const TEST_CACHE_MAX_SIZE: &str = "4GiB";

/// Where Debian's redis-server package puts the server.
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Where Debian's haproxy package (2.6 on Debian 12) puts the balancer.
const HAPROXY: &str = "/usr/sbin/haproxy";

/// The Twisted release the reference programs were recorded with, with
/// what its `ssl:` endpoints need (pyOpenSSL, service_identity).
const TWISTED: &str = "twisted[tls]==26.10.0";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(),
        Some("serve") => build().and_then(|()| serve(&args[1..])),
        Some("test") => build().and_then(|()| test(&args[1..])),
        Some("bench") => build().and_then(|()| bench(&args[1..])),
        Some("python") => python::build_module(&args[1..]),
        Some("c") => c::build_module(&args[1..]),
        Some("js") => js::build_module(&args[1..]),
        _ => Err("usage: cargo xtask build | serve [WEFT ARGS] | test [CARGO TEST ARGS] | bench [--short|--smoke] | python PROGRAM.py [OUT.wasm] [-- ARG...] | c FILE.c [OUT.wasm] | js FILE.js [OUT.wasm]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// Install the wasm target, build every guest, then the host, in release:
/// one profile, so the tests reuse the same build.
fn build() -> Result {
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    // componentize-py, componentize-js and clang each keep one core busy,
    // and cargo's build of wasmtime leaves a core idle for minutes at a
    // time (its largest crates compile alone): build them beside cargo.
    let other_languages = std::thread::spawn(|| {
        python::build()
            .and_then(|()| js::build())
            .and_then(|()| c::build())
    });
    let rust = build_rust();
    let other_languages = other_languages
        .join()
        .unwrap_or_else(|_| Err("the Python, JavaScript and C guests' build panicked".into()));
    rust.and(other_languages)
}

/// The Rust guests, then every target of the host's workspace.
fn build_rust() -> Result {
    let mut guests = cargo();
    guests.args(["build", "--release", "--target", "wasm32-wasip2"]);
    for guest in GUESTS {
        guests.args(["-p", guest]);
    }
    run(&mut guests)?;
    // Every target of the workspace the tests build, so that features
    // unify as they will for `cargo test`: built any narrower, wasmtime's
    // dependencies get other features and the tests compile it again.
    run(cargo()
        .args(["build", "--release", "--all-targets"])
        .args(RELEASE_WORKSPACE))
}

/// The packages built in release: the workspace but this xtask, which
/// `cargo xtask` runs from the dev profile. Built in release as well, its
/// bindings generator and component encoder (wit-bindgen-c, wit-component,
/// wit-parser and wasmparser at another version than wasmtime's) cost
/// 150 s of CPU for nothing.
const RELEASE_WORKSPACE: [&str; 3] = ["--workspace", "--exclude", "xtask"];

fn serve(args: &[String]) -> Result {
    let weft = target_dir().join("release").join("weft");
    run(Command::new(weft).args(args))
}

/// Run every test in release, with Twisted installed for the differential
/// tests in a virtualenv under target/, Debian's redis-server for the
/// tests of the Redis-backed state and Debian's haproxy for the cluster
/// test (each started on free ports).
fn test(args: &[String]) -> Result {
    let python = twisted_python()?;
    if !Path::new(REDIS_SERVER).exists() {
        debian::install(&["redis-server"], "for the redis_counter tests")?;
    }
    if !Path::new(HAPROXY).exists() {
        debian::install(&["haproxy"], "for the cluster test")?;
    }
    run(cargo()
        .args(["test", "--release"])
        .args(RELEASE_WORKSPACE)
        .args(args)
        .env("WEFT_CACHE_MAX_SIZE", TEST_CACHE_MAX_SIZE)
        .env("WEFT_TWISTED_PYTHON", python))?;
    // This xtask's own tests, in the dev profile `cargo xtask` built it in,
    // unless the arguments chose what to run.
    if args.is_empty() {
        run(cargo().args(["test", "--package", "xtask"]))?;
    }
    Ok(())
}

/// The benchmark, with Twisted beside weft when it can be installed.
fn bench(args: &[String]) -> Result {
    let mut command = Command::new(target_dir().join("release").join("weft-bench"));
    command.env("WEFT_CACHE_MAX_SIZE", TEST_CACHE_MAX_SIZE);
    match twisted_python() {
        Ok(python) => command.env("WEFT_TWISTED_PYTHON", python),
        Err(error) => {
            eprintln!("xtask: benchmarking without Twisted: {error}");
            command.arg("--no-twisted")
        }
    };
    run(command.args(args))
}

/// A Python with Twisted, made once in target/twisted-venv.
fn twisted_python() -> Result<PathBuf> {
    let venv = target_dir().join("twisted-venv");
    let python = venv.join("bin").join("python");
    let has_twisted = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import twisted, OpenSSL, service_identity, sys; sys.exit(twisted.__version__ != '26.10.0')",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_twisted(&python) {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            TWISTED,
        ]))?;
    }
    Ok(python)
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    // What `cargo run` set for this binary, not for the builds it starts:
    // ring's build script reruns when CARGO_MANIFEST_DIR differs, so left
    // in, every `cargo build` or `cargo clippy` after `cargo xtask` (and
    // the reverse) built ring, rustls and everything above them again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name)
        {
            command.env_remove(&*name);
        }
    }
    command
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn run(command: &mut Command) -> Result {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}
