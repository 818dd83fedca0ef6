//! baresip (Debian `baresip-core`), a SIP user agent we did not write, registers
//! with the real binary over UDP and TCP: digest MD5 with qop=auth, rport, and a
//! refresh; then unregisters when it exits.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{ENDPOINTS, Switch};

/// Starts baresip with one account and returns it with a channel of its output lines.
fn baresip(dir: &std::path::Path, account: &str) -> (Child, mpsc::Receiver<String>) {
    common::require_tool("baresip", "baresip-core");
    // A free local port for baresip's own listener.
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen 127.0.0.1:{port}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\n\
module_app account.so\nmodule_app menu.so\naudio_player ausine,nothing\naudio_source ausine,nothing\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
    let mut child = Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run baresip (Debian package baresip-core)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, wait: Duration) -> Result<String, Vec<String>> {
    let mut seen = Vec::new();
    let end = std::time::Instant::now() + wait;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    Err(seen)
}

fn registers(switch: &Switch, name: &str, account: String, user: &str, transport: &str) {
    let (mut child, rx) = baresip(&switch.dir.join(name), &account);
    let line = wait_for(&rx, "200 OK", Duration::from_secs(15));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.unwrap_or_else(|seen| panic!("baresip did not register {account}:\n{}", seen.join("\n")));
    assert!(line.contains("[1 binding]"), "{line}");
    assert!(
        switch.wait_for_log(&["registered", &format!("\"aor\":\"{user}\""), &format!("\"{transport}\"")], Duration::from_secs(2)),
        "the switch logged no {transport} registration of {user}"
    );
}

#[test]
fn baresip_registers_over_udp_and_tcp() {
    let switch = Switch::start("baresip", ENDPOINTS);
    let udp: SocketAddr = switch.addr("internal", "udp", false);
    let tcp: SocketAddr = switch.addr("internal", "tcp", false);
    registers(&switch, "udp", format!("<sip:1001@{udp}>;auth_pass=demo1001;regint=60"), "1001", "UDP");
    registers(&switch, "tcp", format!("<sip:1002@{tcp};transport=tcp>;auth_pass=demo1002;regint=60"), "1002", "TCP");
}
