//! Building a Twisted program of one's own (`cargo xtask python
//! PROGRAM.py`; `weft-python`, from the SDK installed with pip, runs the
//! same build and is tested through the `weft new` template) from a folder
//! outside the repository: mistakes are one sentence at build time, a
//! program is built for the world it needs, with its command line, and
//! the build leaves no bytecode in the user's folder.

use std::path::Path;
use std::process::Output;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use weft_tests::{WeftProcess, read_exact, scratch, target_dir, within};

/// Twisted's echo server, as on twistedmatrix.com.
const ECHO: &str = "from twisted.internet import protocol, reactor, endpoints

class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)

class EchoFactory(protocol.Factory):
    def buildProtocol(self, addr):
        return Echo()

endpoints.serverFromString(reactor, \"tcp:1234\").listen(EchoFactory())
reactor.run()
";

/// A guest of weft's earlier look-alike API: its factory, no listen.
const LOOK_ALIKE_ECHO: &str = "from weft.internet import protocol

class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)

class EchoFactory(protocol.Factory):
    protocol = Echo
";

const UDP_ECHO: &str = "from twisted.internet.protocol import DatagramProtocol
from twisted.internet import reactor

class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data, addr)

reactor.listenUDP(9999, Echo())
reactor.run()
";

/// `xtask python PROGRAM.py [-- ARG...]` on `program`, as README says to
/// run it.
async fn build(program: &Path, args: &[&str]) -> Output {
    let xtask = target_dir().join("debug").join("xtask");
    assert!(
        xtask.exists(),
        "{} is built by `cargo xtask`",
        xtask.display()
    );
    let mut command = Command::new(xtask);
    command.arg("python").arg(program);
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    // A build runs componentize-py, about 15 s on an idle machine and over
    // 30 s (`within`'s limit) beside the rest of the suite.
    tokio::time::timeout(BUILD_TIME_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the build took over {BUILD_TIME_LIMIT:?}"))
        .expect("the xtask runs")
}

/// How long one Python build may take.
const BUILD_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_mistakes_fail_the_build_with_one_clear_sentence() {
    let dir = scratch("python-mistakes");
    let shadowed = dir.join("shadowed");
    std::fs::create_dir_all(&shadowed).unwrap();
    // Each in a folder of its own, as a user's guest would be.
    let write = |name: &str, text: &str| {
        let folder = dir.join(name.trim_end_matches(".py"));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let no_listen = ECHO.split("endpoints.serverFromString").next().unwrap();
    let top_level = |line: &str| format!("{ECHO}{line}\n");
    let cases = [
        (
            write(
                "nolisten.py",
                &(no_listen.replace("class EchoFactory", "class EchoFactory1")
                    + "class EchoFactory2(protocol.Factory):\n    protocol = Echo\n"),
            ),
            "nolisten.py: it never listens: weft serves the factory a program passes to \
             reactor.listenTCP (or endpoints.serverFromString(reactor, ...).listen), or the one \
             Factory (or Resource) subclass it defines; it defines 2 factories and 0 resources"
                .to_owned(),
        ),
        (
            write("broken.py", &ECHO.replace("(protocol.Protocol):", "(protocol.Protocol)")),
            "SyntaxError: expected ':'".to_owned(),
        ),
        (
            write("raises.py", &top_level("1 / 0")),
            "ZeroDivisionError: division by zero".to_owned(),
        ),
        (
            write("protocol.py", ECHO),
            "a guest module may not be named `protocol`".to_owned(),
        ),
        (
            write("twisted.py", ECHO),
            "a guest module may not be named `twisted`".to_owned(),
        ),
        (
            write("noudplisten.py", &UDP_ECHO.replace("reactor.listenUDP(9999, Echo())\n", "")),
            "noudplisten.py: it defines a DatagramProtocol but never calls reactor.listenUDP(port, protocol)"
                .to_owned(),
        ),
        (
            write("both.py", &format!("{UDP_ECHO}\n{ECHO}")),
            "both.py: it listens for datagrams and connections: a weft guest serves one or the other"
                .to_owned(),
        ),
        (
            write("argv.py", &ECHO.replace("\"tcp:1234\"", "\"tcp:\" + __import__(\"sys\").argv[1]")),
            "IndexError: list index out of range".to_owned(),
        ),
        (
            write("threads.py", &top_level("from twisted.internet import threads\nthreads.deferToThread(print)")),
            "weft runs a guest in one thread and grants it no threads".to_owned(),
        ),
        (
            write("processes.py", &top_level("reactor.spawnProcess(protocol.ProcessProtocol(), \"ls\")")),
            "weft's sandbox grants a guest no processes".to_owned(),
        ),
    ];
    for (module, expected) in &cases {
        let output = build(module, &[]).await;
        let stderr = stderr(&output);
        assert!(!output.status.success(), "{}: {stderr}", module.display());
        assert!(stderr.contains(expected), "{}: {stderr}", module.display());
        assert!(
            !stderr.contains("stack backtrace") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // The protocol.py case aside, each file names its line.
    let output = build(&cases[1].0, &[]).await;
    assert!(
        stderr(&output).contains("broken.py\", line 3"),
        "{}",
        stderr(&output)
    );

    // A module beside one named like the SDK's is refused too.
    std::fs::write(shadowed.join("echo.py"), ECHO).unwrap();
    std::fs::write(shadowed.join("weft.py"), "").unwrap();
    let output = build(&shadowed.join("echo.py"), &[]).await;
    assert!(
        stderr(&output).contains("`weft.py` beside it would hide weft's own `weft` module"),
        "{}",
        stderr(&output)
    );
    for (module, _) in &cases {
        let folder = module.parent().unwrap();
        assert!(
            !folder.join("__pycache__").exists(),
            "no bytecode left in {}",
            folder.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_guest_built_outside_the_repository_is_served() {
    let dir = scratch("python-elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    // Twisted's echo, one that takes its port from its command line (given
    // at build time), and one of weft's earlier look-alike API.
    let programs = [
        ("myecho.py", ECHO.to_owned(), &[][..]),
        (
            "argvecho.py",
            ECHO.replace("\"tcp:1234\"", "\"tcp:%s\" % __import__(\"sys\").argv[1]"),
            &["1234"][..],
        ),
        ("lookalike.py", LOOK_ALIKE_ECHO.to_owned(), &[][..]),
    ];
    for (name, text, args) in programs {
        let program = dir.join(name);
        std::fs::write(&program, text).unwrap();
        let output = build(&program, args).await;
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        assert!(
            !dir.join("__pycache__").exists(),
            "no bytecode left in the user's folder"
        );
        let component = program.with_extension("wasm");
        let service = format!("{}@tcp:0:interface=127.0.0.1", component.display());
        let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
        let mut client = weft_tests::connect(addrs[0]).await;
        client.write_all(b"built elsewhere").await.unwrap();
        assert_eq!(
            read_exact(&mut client, 15).await,
            b"built elsewhere",
            "{name}"
        );
        weft.signal(libc::SIGINT);
        assert!(weft.wait().await.0.success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_datagram_guest_is_built_for_the_datagram_world_and_served() {
    let dir = scratch("python-udp-elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("myudp.py");
    std::fs::write(&module, UDP_ECHO).unwrap();
    let output = build(&module, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let component = dir.join("myudp.wasm");
    let service = format!("{}@udp:0:interface=127.0.0.1", component.display());
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"built elsewhere", addrs[0]).await.unwrap();
    let mut reply = [0; 64];
    let (len, _) = within(client.recv_from(&mut reply)).await.unwrap();
    assert_eq!(&reply[..len], b"built elsewhere");
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}
