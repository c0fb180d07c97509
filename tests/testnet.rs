//! The test network of issue 12 (tests/common/net.rs): a node of the inventory boots on
//! a tap device in a network namespace, gets its reserved address from dnsmasq (the
//! reservation taken from the inventory), is pointed by DHCP at the boot server's entry
//! script on the bridge address, boots its diskless image and calls home from that
//! address. Needs root, QEMU, ip, dnsmasq, curl and the Debian mirror
//! (scripts/install-deps.sh). One image build, one VM boot.
mod common;

use common::net::{bootset, install_console_unit, TestNet};
use common::vm::boot_until_marker;
use common::Store;

const MAC: &str = "52:54:00:12:0c:01";

#[test]
fn a_node_boots_with_its_reserved_address_on_a_bridged_network() {
    common::require_root();
    let s = Store::new();
    let mut net = TestNet::new();
    let node_ip = net.addr(11);
    // No curl in a core image: the ready unit calls home through bash's /dev/tcp.
    s.core_image("tn", &[]);
    // After the ready unit (and its call-home): the address the node holds.
    install_console_unit(
        &s,
        "tn",
        "testnet-marker",
        "echo \"testnet: up as $(cat /proc/sys/kernel/hostname) with $(ip -4 -o addr show scope global | tr -s ' ' | cut -d' ' -f2,4 | tr '\\n' ' ')end\"",
    );
    s.ok(&["nodes", "add", "tn1", "--mac", MAC, "--ip", &node_ip]);
    // A second node, never booted: its reservation is given too, and nothing is
    // recorded for it.
    s.ok(&[
        "nodes",
        "add",
        "tn2",
        "--mac",
        "52:54:00:12:0c:02",
        "--ip",
        &net.addr(12),
    ]);
    bootset(&s, &["-n", "tn[1-2]", "-b", "diskless", "-i", "tn"]);
    net.serve(&s);
    net.start_dhcp(&s);
    assert_eq!(net.reservations.len(), 2, "{:?}", net.reservations);

    let vm = net.vm(MAC, s.root().join("tn1.log"), "testnet: up as");
    let run =
        boot_until_marker(&vm).unwrap_or_else(|e| panic!("tn1 did not boot: {e}\n{}", net.logs()));
    eprintln!("tn1: power-on to marker {:.1} s", run.elapsed_secs);
    let marker = run
        .log
        .lines()
        .find(|l| l.contains("testnet: up as"))
        .unwrap_or_default()
        .to_string();

    // DHCP: dnsmasq acknowledged the reserved address for this MAC (iPXE, the
    // initramfs and the booted system each ask), and never a dynamic one.
    let acks = net.acks_for(MAC);
    assert!(
        acks.iter().any(|l| l.contains(&format!(" {node_ip} "))),
        "no DHCPACK of {node_ip} for {MAC}:\n{}",
        net.logs()
    );
    assert!(
        acks.iter().all(|l| l.contains(&format!(" {node_ip} "))),
        "{MAC} was given another address: {acks:?}"
    );
    assert!(acks.len() >= 2, "iPXE and the initramfs both ask: {acks:?}");
    // The bootfile was the server's entry script on the bridge: iPXE followed the
    // chain to the node's own script.
    assert!(
        net.dnsmasq_log().contains(&net.entry_url()),
        "{}",
        net.logs()
    );
    assert!(
        run.log.contains("disklessset: tn1 boots diskless image tn"),
        "chain not followed"
    );
    assert!(run.log.contains("disklessset: image tn booted"));
    // The booted system holds the reserved address (networkd kept or renewed it).
    assert!(
        marker.contains(&format!("{node_ip}/24")),
        "the node does not hold {node_ip}: {marker:?}"
    );

    // The server saw the node: its script fetch and the image's call-home from
    // the node's address.
    let st: serde_json::Value =
        serde_json::from_str(&bootset(&s, &["-s", "--json"])).expect("bootset -s --json");
    let seen: Vec<&serde_json::Value> = st
        .as_array()
        .expect("status lines")
        .iter()
        .flat_map(|l| l["seen"].as_array().into_iter().flatten())
        .collect();
    let tn1 = seen
        .iter()
        .find(|n| n["name"] == "tn1")
        .unwrap_or_else(|| panic!("tn1 not seen: {st}\n{}", net.logs()));
    assert_eq!(tn1["state"], "booted", "{tn1}\n{}", net.logs());
    assert!(tn1["booted_at"].as_u64().is_some(), "{tn1}");
    assert!(
        !seen.iter().any(|n| n["name"] == "tn2"),
        "tn2 never booted: {st}"
    );
    drop(net);
}

#[test]
fn the_network_is_gone_after_drop_also_on_panic() {
    common::require_root();
    let s = Store::new();
    std::fs::create_dir_all(s.images()).unwrap();
    s.ok(&[
        "nodes",
        "add",
        "x1",
        "--mac",
        "52:54:00:12:0d:01",
        "--ip",
        "10.1.0.5",
    ]);
    let ns = std::sync::Mutex::new(String::new());
    let pids = std::sync::Mutex::new(Vec::new());
    let r = std::panic::catch_unwind(|| {
        let mut net = TestNet::new();
        *ns.lock().unwrap() = net.ns.clone();
        net.add_tap();
        net.serve(&s);
        net.start_dhcp(&s);
        *pids.lock().unwrap() = net.pids();
        // both answer inside the namespace only
        let (code, err) = net.curl_status(&[&format!("{}/health", net.base_url())]);
        assert_eq!(code, 200, "{err}");
        assert!(net.dnsmasq_log().contains("DHCP, IP range"));
        panic!("test panic");
    });
    assert!(r.is_err());
    let ns = ns.into_inner().unwrap();
    assert!(ns.starts_with("dls-tn-"), "{ns}");
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns),
        "{ns} still exists"
    );
    assert!(!std::path::Path::new(&format!("/run/netns/{ns}")).exists());
    // dnsmasq and the server were killed and reaped
    let pids = pids.into_inner().unwrap();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for p in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "process {p} survived the drop"
        );
    }
}
