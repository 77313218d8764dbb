//! `weft new NAME --lang LANG`: a minimal echo guest project in a folder of
//! its own, outside any checkout, with a README that says how to build and
//! serve it. The sources are the bundled echo guests themselves.

mod vendor;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The languages `weft new` writes a project in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    C,
    Js,
}

/// The bundled echo guest in each language: what a new project starts as.
const RUST_ECHO: &str = include_str!("../../guests/echo/src/lib.rs");
const PYTHON_ECHO: &str = include_str!("../../guests/python/echo.py");
const C_ECHO: &str = include_str!("../../guests/c/echo.c");
const JS_ECHO: &str = include_str!("../../guests/js/echo.js");

/// Module names a Python guest may not have, as the SDK's build check
/// (`guest-sdk/python/weft/_check.py`) refuses them: the SDK's top-level
/// modules, those of componentize-py's bindings, and Twisted's and its
/// dependencies', which the build bundles beside the program.
const PYTHON_TAKEN: [&str; 15] = [
    "weft",
    "protocol",
    "wit_world",
    "componentize_py_types",
    "componentize_py_runtime",
    "twisted",
    "zope",
    "attr",
    "attrs",
    "automat",
    "constantly",
    "hyperlink",
    "incremental",
    "idna",
    "typing_extensions",
];

/// What `weft new` is asked for.
pub struct NewProject {
    /// The project's name: its folder, crate, module and component.
    pub name: String,
    /// The language of its guest.
    pub language: Language,
    /// The folder to create the project's folder in.
    pub parent: PathBuf,
    /// The weft checkout whose SDK and build tools the project uses.
    pub checkout: PathBuf,
    /// Copy the Rust SDK into the project rather than depend on the
    /// checkout's by path.
    pub vendor: bool,
}

/// Write the project `name` in `language` into `parent/name`, building
/// against the weft checkout at `checkout` (its SDK and its build tools,
/// or a copy of its Rust SDK with `vendor`). Returns the project's folder.
pub fn new(project: &NewProject) -> anyhow::Result<PathBuf> {
    let NewProject {
        name,
        language,
        parent,
        checkout,
        vendor,
    } = project;
    let (name, language, vendor) = (name.as_str(), *language, *vendor);
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        anyhow::bail!(
            "`{name}` cannot name a guest: use lowercase letters, digits and `_`, starting \
             with a letter (it names the Rust crate, the Python module and the component)"
        );
    }
    if language == Language::Python && PYTHON_TAKEN.contains(&name) {
        anyhow::bail!(
            "`{name}` cannot name a Python guest: the build puts a module of that name on the \
             guest's path (weft's SDK, or componentize-py's bindings), which the guest's \
             module would hide; pick another name"
        );
    }
    let sdk = checkout.join("guest-sdk");
    if !sdk.join("Cargo.toml").is_file() || !checkout.join("xtask").is_dir() {
        anyhow::bail!(
            "{} is not a weft checkout (no guest-sdk/ and xtask/ in it): pass the one weft was \
             built from with --checkout DIR",
            checkout.display()
        );
    }
    if vendor && language != Language::Rust {
        anyhow::bail!(
            "--vendor copies the Rust SDK: a Python project installs its SDK with pip, and C \
             and JavaScript projects build with the checkout's tools"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        anyhow::bail!(
            "{} already exists: weft new writes a new folder",
            dir.display()
        );
    }
    let xtask = format!(
        "cargo run -q --manifest-path {} -p xtask --",
        checkout.join("Cargo.toml").display()
    );
    let (files, build, wasm, limits): (Vec<(PathBuf, String)>, String, String, &str) =
        match language {
            Language::Rust => (
                vec![
                    ("Cargo.toml".into(), cargo_toml(name, &sdk, vendor)),
                    (PathBuf::from("src").join("lib.rs"), RUST_ECHO.to_owned()),
                ],
                "rustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2"
                    .into(),
                format!("target/wasm32-wasip2/release/{name}.wasm"),
                "",
            ),
            Language::Python => (
                vec![(format!("{name}.py").into(), PYTHON_ECHO.to_owned())],
                format!(
                    "python3 -m venv .venv\n.venv/bin/pip install {}\n.venv/bin/weft-python {name}.py",
                    checkout.join("guest-sdk").join("python").display()
                ),
                format!("{name}.wasm"),
                "",
            ),
            Language::C => (
                vec![(format!("{name}.c").into(), C_ECHO.to_owned())],
                format!("{xtask} c {name}.c"),
                format!("{name}.wasm"),
                "",
            ),
            // A JavaScript runtime needs more than the default 64 MiB.
            Language::Js => (
                vec![(format!("{name}.js").into(), JS_ECHO.to_owned())],
                format!("{xtask} js {name}.js"),
                format!("{name}.wasm"),
                ",memory=256MiB",
            ),
        };
    let readme = readme(
        name,
        language,
        &files[files.len() - 1].0,
        &build,
        &wasm,
        limits,
        &tools(language, &sdk, vendor),
    );
    let written = files
        .iter()
        .chain([&(PathBuf::from("README.md"), readme)])
        .try_for_each(|(path, text)| write(&dir.join(path), text))
        .and_then(|()| match vendor {
            true => vendor::vendor(checkout, &dir),
            false => Ok(()),
        });
    if let Err(error) = written {
        // The folder did not exist before: leave nothing half-written.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok(dir)
}

/// Write `text` to `path`, creating its folders.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The checkout weft was built from, if it is still there.
pub fn built_from() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo_toml(name: &str, sdk: &Path, vendor: bool) -> String {
    let dependency = if vendor {
        format!(
            "# weft's Rust SDK, copied into {}/ with the WIT it is generated from:\n\
             # the project builds without a weft checkout.\n\
             weft-guest = {{ path = \"{}/guest-sdk\" }}",
            vendor::FOLDER,
            vendor::FOLDER
        )
    } else {
        format!(
            "# weft's Rust SDK, by path from the weft checkout: it builds there, with\n\
             # the checkout's wit/ and workspace settings.\n\
             weft-guest = {{ path = \"{}\" }}",
            sdk.display()
        )
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
# weft's SDK needs Rust 1.95 or later, and the wasm32-wasip2 target.
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
{dependency}

# A workspace of its own, wherever the project is.
[workspace]
"#
    )
}

fn readme(
    name: &str,
    language: Language,
    source: &Path,
    build: &str,
    wasm: &str,
    limits: &str,
    tools: &str,
) -> String {
    let language_name = match language {
        Language::Rust => "Rust",
        Language::Python => "Python",
        Language::C => "C",
        Language::Js => "JavaScript",
    };
    format!(
        "# {name}: a weft guest in {language_name}\n\n\
         An echo server, made by `weft new`: every byte a client sends comes back.\n\
         Edit `{}` into your own protocol.\n\n\
         ## Build\n\n\
         From this folder:\n\n\
         ```sh\n{build}\n```\n\n\
         This writes `{wasm}`. {tools}\n\n\
         ## Serve\n\n\
         ```sh\nweft serve {wasm}@tcp:1234{limits}\n```\n\n\
         Then `nc 127.0.0.1 1234`: what you type comes back.\n\n\
         ## When the guest fails\n\n\
         By default one instance of the guest serves every connection of a worker, \
         sharing its state as a Twisted factory does. A trap there (a panic, an \
         uncaught error that kills the runtime, the deadline or the memory cap) \
         closes every connection of that worker and loses the instance's state; \
         weft starts a fresh instance for the next connection. To confine a trap \
         to the connection that caused it, serve with `,isolation=connection` \
         (each connection gets its own instance, so nothing is shared between \
         them); state that must outlive an instance belongs outside it: in the \
         key-value buckets and topics weft keeps for the service \
         (`wasi:keyvalue` and `weft:protocol/messaging`; in Rust \
         `weft_guest::keyvalue` and `weft_guest::messaging`, in Python \
         `weft.keyvalue` and `weft.messaging`; weft's docs/state.md), which \
         every worker, instance and version share, or in a server the guest \
         connects to.\n",
        source.display()
    )
}

/// What the README says the build needs and does.
fn tools(language: Language, sdk: &Path, vendor: bool) -> String {
    match language {
        Language::Rust if vendor => format!(
            "Rust 1.95 or later with the `wasm32-wasip2` target; the SDK, `weft-guest`, is \
             the copy in `{}/`, so this folder builds on its own.",
            vendor::FOLDER
        ),
        Language::Rust => format!(
            "Rust 1.95 or later with the `wasm32-wasip2` target; the SDK, `weft-guest`, \
             comes by path from {}.",
            sdk.display()
        ),
        Language::Python => "weft's Python SDK, installed with pip into `.venv` (once), \
             brings Twisted, componentize-py and `weft-python`, which runs the Twisted \
             program with weft's reactor to see what it listens on and builds it. It \
             leaves no `__pycache__` here."
            .to_owned(),
        Language::C => "The build generates the bindings header, `service.h`, beside the \
             source, compiles with clang for wasm32-wasi (Debian's `clang`, `lld` and \
             `wasi-libc`, installed by the first build when missing) and makes the component."
            .to_owned(),
        Language::Js => "The build uses componentize-js, installed with npm by the first \
             build."
            .to_owned(),
    }
}
