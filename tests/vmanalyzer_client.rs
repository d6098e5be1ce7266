//! A stand-in for VMAnalyzer's gather scripts: each `vma_*` function reads a reply the
//! way the Python does (`.strip()` on strings, `.get()` lookups, `int()`, `round()`)
//! and returns `Err` wherever the script would raise or record a failure. The tests
//! run the real binary on every distro fixture and feed it the replies.

mod common;

use common::{fixture, Agent, DISTROS};
use serde_json::{json, Map, Value};

/// Python's `str.strip()` on a value: only a `str` has it (AttributeError otherwise).
fn strip(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(|s| s.trim().to_string())
        .ok_or_else(|| format!("{what}: {v} has no .strip() (not a string)"))
}

/// `d.get(key, default)` on something that must be a dict.
fn get<'a>(d: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    let obj = d
        .as_object()
        .ok_or_else(|| format!("{d} has no .get() (not a dict)"))?;
    Ok(obj.get(key))
}

/// Python's `int(x)`: ints, floats (truncated) and strings holding an integer.
fn py_int(v: &Value, what: &str) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| format!("{what}: int({n}) overflows")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{what}: int({s:?}) raises ValueError")),
        Value::Bool(b) => Ok(*b as i64),
        _ => Err(format!("{what}: int({v}) raises TypeError")),
    }
}

/// gather/get_vm_tcp_stats.py: `round(int(retranssegs) / int(outsegs) * 100, 4)`.
fn vma_tcp_snmp(ret: &Value) -> Result<f64, String> {
    let zero = json!(0);
    let retrans = py_int(get(ret, "retranssegs")?.unwrap_or(&zero), "retranssegs")?;
    let out = py_int(get(ret, "outsegs")?.unwrap_or(&zero), "outsegs")?;
    Ok(if out == 0 {
        0.0
    } else {
        retrans as f64 / out as f64 * 100.0
    })
}

/// The pass-through commands: success is a reply with `return`; bc-guest-get-diskstats
/// is stored as `disk_mounts` and expected to be a list.
fn vma_passthrough(reply: &Value) -> Result<&Value, String> {
    reply
        .get("return")
        .ok_or_else(|| format!("no return: {reply}"))
}

/// Runs `command` on an agent over `distro`'s fixture and returns the whole reply.
fn ask(agent: &Agent, command: &str, args: Option<Value>) -> Value {
    let mut req = Map::new();
    req.insert("execute".into(), json!(command));
    if let Some(a) = args {
        req.insert("arguments".into(), a);
    }
    agent.request(&Value::Object(req).to_string())
}

#[test]
fn tcp_snmp_gives_the_retransmission_rate() {
    for distro in DISTROS {
        let agent = Agent::with_sysroot(&fixture(distro), &[]);
        let reply = ask(&agent, "bc-guest-get-tcp-snmp", None);
        let rate = vma_tcp_snmp(vma_passthrough(&reply).unwrap()).unwrap();
        assert!(rate > 0.0 && rate < 1.0, "{distro}: {rate}");
    }
}

#[test]
fn passthrough_commands_answer_on_every_distro() {
    for distro in DISTROS {
        let agent = Agent::with_sysroot(&fixture(distro), &[]);
        for command in [
            "guest-get-tcp-conn-state",
            "guest-get-tcp-conn",
            "guest-get-cpustinfo",
        ] {
            let reply = ask(&agent, command, None);
            let ret = vma_passthrough(&reply).unwrap_or_else(|e| panic!("{distro} {command}: {e}"));
            assert!(ret.is_object(), "{distro} {command}: {ret}");
        }
    }
}

#[test]
fn client_rejects_what_vmanalyzer_rejects() {
    assert!(vma_tcp_snmp(&json!([])).is_err());
    assert!(vma_tcp_snmp(&json!({"retranssegs": "1.5", "outsegs": 2})).is_err());
    assert_eq!(
        vma_tcp_snmp(&json!({"retranssegs": "1", "outsegs": 4})),
        Ok(25.0)
    );
    assert_eq!(vma_tcp_snmp(&json!({})), Ok(0.0));
    assert!(strip(&json!(5), "x").is_err());
    assert!(vma_passthrough(&json!({"error": {"class": "GenericError"}})).is_err());
}
