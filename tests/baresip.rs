//! baresip (Debian `baresip-core`), a SIP user agent we did not write, registers
//! with the real binary over UDP and TCP: digest MD5 with qop=auth, rport, and a
//! refresh; then unregisters when it exits.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use common::{ENDPOINTS, Switch};

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
    let (mut child, rx) = common::baresip(&switch.dir.join(name), &account);
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
