//! Building a Python guest of one's own (`cargo xtask python MODULE.py`;
//! `weft-python`, from the SDK installed with pip, runs the same build and
//! is tested through the `weft new` template) from a folder outside the
//! repository: mistakes are one sentence at build time, a module is built
//! for the world it needs, and the build leaves no bytecode in the user's
//! folder.

use std::path::Path;
use std::process::Output;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use weft_tests::{WeftProcess, read_exact, scratch, target_dir, within};

const ECHO: &str = "from weft.internet import protocol

class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)

class EchoFactory(protocol.Factory):
    protocol = Echo
";

const UDP_ECHO: &str = "from weft.internet.protocol import DatagramProtocol
from weft.internet import reactor

class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data, addr)

reactor.listenUDP(9999, Echo())
reactor.run()
";

/// `xtask python MODULE.py` on `module`, as README says to run it.
async fn build(module: &Path) -> Output {
    let xtask = target_dir().join("debug").join("xtask");
    assert!(
        xtask.exists(),
        "{} is built by `cargo xtask`",
        xtask.display()
    );
    within(Command::new(xtask).arg("python").arg(module).output())
        .await
        .expect("the xtask runs")
}

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
    let no_factory = ECHO.split("class EchoFactory").next().unwrap();
    let cases = [
        (
            write("nofactory.py", no_factory),
            "nofactory.py: it defines no Factory subclass (and no Resource subclass)".to_owned(),
        ),
        (
            write("twice.py", &format!("{ECHO}\nclass Other(protocol.Factory):\n    protocol = Echo\n")),
            "twice.py: it defines 2 Factory subclasses (EchoFactory, Other): weft serves exactly one".to_owned(),
        ),
        (
            write("broken.py", &ECHO.replace("(protocol.Protocol):", "(protocol.Protocol)")),
            "SyntaxError: expected ':'".to_owned(),
        ),
        (
            write("raises.py", &format!("{ECHO}\n1 / 0\n")),
            "ZeroDivisionError: division by zero".to_owned(),
        ),
        (
            write("protocol.py", ECHO),
            "a guest module may not be named `protocol`".to_owned(),
        ),
        (
            write("nolisten.py", &UDP_ECHO.replace("reactor.listenUDP(9999, Echo())\n", "")),
            "nolisten.py: it defines Echo but never calls reactor.listenUDP(port, protocol)".to_owned(),
        ),
        (
            write("both.py", &format!("{UDP_ECHO}\n{ECHO}")),
            "both.py: it defines a DatagramProtocol and a Factory (or Resource)".to_owned(),
        ),
    ];
    for (module, expected) in &cases {
        let output = build(module).await;
        let stderr = stderr(&output);
        assert!(!output.status.success(), "{}: {stderr}", module.display());
        assert!(stderr.contains(expected), "{}: {stderr}", module.display());
        assert!(
            !stderr.contains("stack backtrace") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // The protocol.py case aside, each file names its line.
    let output = build(&cases[2].0).await;
    assert!(
        stderr(&output).contains("broken.py\", line 3"),
        "{}",
        stderr(&output)
    );

    // A module beside one named like the SDK's is refused too.
    std::fs::write(shadowed.join("echo.py"), ECHO).unwrap();
    std::fs::write(shadowed.join("weft.py"), "").unwrap();
    let output = build(&shadowed.join("echo.py")).await;
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
    let module = dir.join("myecho.py");
    std::fs::write(&module, ECHO).unwrap();
    let output = build(&module).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !dir.join("__pycache__").exists(),
        "no bytecode left in the user's folder"
    );
    let component = dir.join("myecho.wasm");
    let service = format!("{}@tcp:0:interface=127.0.0.1", component.display());
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let mut client = weft_tests::connect(addrs[0]).await;
    client.write_all(b"built elsewhere").await.unwrap();
    assert_eq!(read_exact(&mut client, 15).await, b"built elsewhere");
    weft.signal(libc::SIGTERM);
    assert!(weft.wait().await.0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_datagram_guest_is_built_for_the_datagram_world_and_served() {
    let dir = scratch("python-udp-elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("myudp.py");
    std::fs::write(&module, UDP_ECHO).unwrap();
    let output = build(&module).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let component = dir.join("myudp.wasm");
    let service = format!("{}@udp:0:interface=127.0.0.1", component.display());
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"built elsewhere", addrs[0]).await.unwrap();
    let mut reply = [0; 64];
    let (len, _) = within(client.recv_from(&mut reply)).await.unwrap();
    assert_eq!(&reply[..len], b"built elsewhere");
    weft.signal(libc::SIGTERM);
    assert!(weft.wait().await.0.success());
}
