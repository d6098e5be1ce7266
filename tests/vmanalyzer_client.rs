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

/// `d.get(key)` on something that must be a dict (AttributeError otherwise).
fn get<'a>(d: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    let obj = d
        .as_object()
        .ok_or_else(|| format!("{d} has no .get() (not a dict)"))?;
    Ok(obj.get(key))
}

/// `d[key]` (KeyError when missing).
fn index<'a>(d: &'a Value, key: &str) -> Result<&'a Value, String> {
    get(d, key)?.ok_or_else(|| format!("KeyError: {key}"))
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

/// Python's `round(x, 2)` accepts ints and floats only.
fn py_number(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("{what}: round({v}) raises TypeError"))
}

/// The `return` of a reply: the gather scripts treat its absence as a failure.
fn ret(reply: &Value) -> Result<&Value, String> {
    reply
        .get("return")
        .ok_or_else(|| format!("no return: {reply}"))
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

/// One row of gather/get_vm_{cpu,mem}_top_app.py's `format_process_*`.
#[derive(Debug)]
struct TopRow {
    process_id: String,
    user: String,
    cpu_util: String,
    mem_util: String,
    open_files: String,
    cmd_name: String,
}

/// The top-N parsers: an empty or missing list is "采集失败" (collection failed); every
/// field is `.get(k, default).strip()`ped; a doubly nested process-info is tolerated.
fn vma_topn(ret: &Value) -> Result<Vec<TopRow>, String> {
    let list = match ret {
        Value::Array(l) if !l.is_empty() => l,
        Value::Array(_) | Value::Null => return Err("empty list: collection failed".into()),
        // A dict iterates as its keys, which have no .get(): AttributeError.
        other => return Err(format!("{other} is not a list")),
    };
    let empty = json!({});
    list.iter()
        .map(|process| {
            let pid = get(process, "process-id")?
                .cloned()
                .unwrap_or(json!("未知"));
            let mut info = get(process, "process-info")?.unwrap_or(&empty);
            if let Some(inner) = get(info, "process-info")? {
                info = inner;
            }
            let field = |k: &str, default: &str| -> Result<String, String> {
                let d = json!(default);
                strip(get(info, k)?.unwrap_or(&d), k)
            };
            Ok(TopRow {
                process_id: strip(&pid, "process-id")?,
                user: field("user", "未知")?,
                cpu_util: field("cpu-util", "0")?,
                mem_util: field("mem-util", "0")?,
                open_files: field("open-files", "N/A")?,
                cmd_name: field("cmd-name", "未知")?.replace('\n', ""),
            })
        })
        .collect()
}

/// gather/get_vm_load_and_lastboot.py: each average `.strip()`ped; a missing key
/// becomes "N/A", which we count as a failure too.
fn vma_load(ret: &Value) -> Result<[String; 3], String> {
    let f = |k: &str| strip(index(ret, k)?, k);
    Ok([
        f("load1-average")?,
        f("load5-average")?,
        f("load15-average")?,
    ])
}

fn vma_lastboot(ret: &Value) -> Result<String, String> {
    strip(index(ret, "lastboot")?, "lastboot")
}

/// oneClickEnable/get_premium_memory.py: `.get(k, 0)` then `round()`, usage from
/// total − available.
fn vma_memory(ret: &Value) -> Result<(f64, f64), String> {
    let zero = json!(0);
    let n = |k: &str| py_number(get(ret, k)?.unwrap_or(&zero), k);
    let (total, available, _free) = (n("total")?, n("available")?, n("free")?);
    let used = total - available;
    let usage = if total == 0.0 {
        0.0
    } else {
        used / total * 100.0
    };
    Ok((used, usage))
}

/// diagnose/domain_detect/detect_domain_availability.sh on virsh's output text:
/// `cut -d'(' -f2 | cut -d')' -f1 | cut -d',' -f1` after checking for a timeout and for
/// an unsupported command.
fn vma_check_fs(virsh_output: &str) -> Result<String, String> {
    if virsh_output.contains("Timed out") {
        return Err("timed out".into());
    }
    if virsh_output.contains("has not been found") {
        return Err("qga不支持命令 (command not supported)".into());
    }
    let field = |s: &str, d: char, n: usize| s.split(d).nth(n).unwrap_or(s).to_string();
    let words = virsh_output
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(field(&field(&field(&words, '(', 1), ')', 0), ',', 0))
}

/// Runs `command` on `agent` and returns the whole reply.
fn ask(agent: &Agent, command: &str, args: Option<Value>) -> Value {
    let mut req = Map::new();
    req.insert("execute".into(), json!(command));
    if let Some(a) = args {
        req.insert("arguments".into(), a);
    }
    agent.request(&Value::Object(req).to_string())
}

fn is_percent(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(|v| v >= 0.0) && s.split_once('.').is_some_and(|(_, d)| d.len() <= 2)
}

#[test]
fn topn_replies_parse_as_vmanalyzer_does() {
    for distro in DISTROS {
        let agent = Agent::with_sysroot(&fixture(distro), &[]);
        // Exactly the requests the gather scripts send: the count as a string.
        for (command, args) in [
            ("guest-get-cputopn-status", json!({"cputopn-num": "5"})),
            ("guest-get-memtopn-status", json!({"memtopn-num": "5"})),
            ("guest-get-cputopn-status", json!({"cputopn-num": 2})),
        ] {
            let reply = ask(&agent, command, Some(args.clone()));
            let rows = vma_topn(ret(&reply).unwrap())
                .unwrap_or_else(|e| panic!("{distro} {command}: {e}"));
            let want = py_int(args.as_object().unwrap().values().next().unwrap(), "n").unwrap();
            assert_eq!(rows.len() as i64, want, "{distro} {command}");
            for r in &rows {
                assert!(r.process_id.parse::<u32>().is_ok(), "{distro}: {r:?}");
                assert!(
                    is_percent(&r.cpu_util) && is_percent(&r.mem_util),
                    "{distro}: {r:?}"
                );
                assert!(r.open_files == "N/A" || r.open_files.parse::<u32>().is_ok());
                assert!(
                    !r.user.is_empty() && !r.cmd_name.is_empty(),
                    "{distro}: {r:?}"
                );
            }
        }
    }
}

#[test]
fn load_and_lastboot_parse_as_vmanalyzer_does() {
    std::env::remove_var("TZ");
    for distro in DISTROS {
        let agent = Agent::with_sysroot(&fixture(distro), &[]);
        let load = vma_load(ret(&ask(&agent, "guest-get-load-average", None)).unwrap()).unwrap();
        let loadavg = std::fs::read_to_string(fixture(distro).join("proc/loadavg")).unwrap();
        let printed: Vec<&str> = loadavg.split_whitespace().take(3).collect();
        assert_eq!(load.to_vec(), printed, "{distro}");
        let boot = vma_lastboot(ret(&ask(&agent, "guest-get-lastboot-time", None)).unwrap());
        let boot = boot.unwrap();
        assert_eq!(boot.len(), "YYYY-MM-DD HH:MM:SS".len(), "{distro}: {boot}");
        assert!(boot.starts_with("20"), "{distro}: {boot}");
    }
}

#[test]
fn tcp_snmp_gives_the_retransmission_rate() {
    for distro in DISTROS {
        let agent = Agent::with_sysroot(&fixture(distro), &[]);
        let reply = ask(&agent, "bc-guest-get-tcp-snmp", None);
        let rate = vma_tcp_snmp(ret(&reply).unwrap()).unwrap();
        assert!(rate > 0.0 && rate < 1.0, "{distro}: {rate}");
    }
}

#[test]
fn memory_status_gives_usage_from_available() {
    for distro in DISTROS {
        let agent = Agent::with_sysroot(&fixture(distro), &[]);
        let reply = ask(&agent, "guest-get-memory-status", None);
        let (used, usage) = vma_memory(ret(&reply).unwrap()).unwrap();
        // Without `available` the script would report 100 %.
        assert!(
            used > 0.0 && usage > 0.0 && usage < 100.0,
            "{distro}: {usage}"
        );
    }
}

#[test]
fn passthrough_commands_answer_on_every_distro() {
    for distro in DISTROS {
        let agent = Agent::with_sysroot(&fixture(distro), &[]);
        for command in [
            "guest-get-cpu-utilization",
            "guest-get-cpustinfo",
            "guest-get-tcp-conn-state",
            "guest-get-tcp-conn",
            "guest-get-memory-status",
            "guest-get-disk-status",
            "guest-get-oom-status",
            "guest-get-system-info",
        ] {
            let reply = ask(&agent, command, None);
            let r = ret(&reply).unwrap_or_else(|e| panic!("{distro} {command}: {e}"));
            assert!(r.is_object(), "{distro} {command}: {r}");
        }
        // get_vm_proc_dishstats.py stores it as `disk_mounts`, a list.
        let reply = ask(&agent, "bc-guest-get-diskstats", None);
        let disks = ret(&reply).unwrap().as_array().unwrap();
        assert!(!disks.is_empty(), "{distro}");
    }
}

#[test]
fn check_fs_reads_the_first_mount_option() {
    // The premium edition's availability check, verbatim (the shell has already eaten
    // the quotes around the egrep pattern).
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let req = json!({"execute": "guest-user-check",
                     "arguments": {"command-name": "check-fs",
                                   "command": "mount | egrep /dev/[v,s]d"}});
    c.send(req.to_string().as_bytes());
    let text = c.text();
    let option = vma_check_fs(&text).unwrap();
    let reply: Value = serde_json::from_str(&text).unwrap();
    let result = reply["return"]["result"].as_str().unwrap();
    match result.split_once('(') {
        // The first option of the first matching `mount` line.
        Some((before, after)) => {
            assert!(
                !before.contains(['(', ')']) && after.starts_with(&option),
                "{text}"
            );
            assert!(option == "rw" || option == "ro", "{option}");
        }
        // No /dev/vd* or /dev/sd* here: the script would see the raw text, not "ro".
        None => assert_ne!(option, "ro"),
    }
}

#[test]
fn unknown_command_says_has_not_been_found() {
    let agent = Agent::start(&[]);
    let reply = agent.request(r#"{"execute":"guest-get-gpu-usage"}"#);
    assert!(vma_check_fs(&reply.to_string()).is_err());
    assert!(reply["error"]["desc"]
        .as_str()
        .unwrap()
        .contains("has not been found"));
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
    assert!(vma_topn(&json!([])).is_err());
    assert!(vma_topn(&json!({})).is_err());
    let row = |pid: Value, cpu: Value| {
        json!([{"process-id": pid, "process-info": {"user": "root", "cpu-util": cpu,
                 "mem-util": "1.0", "open-files": "3", "cmd-name": "java\n-Dx"}}])
    };
    assert!(vma_topn(&row(json!(123), json!("1.0"))).is_err());
    assert!(vma_topn(&row(json!("123"), json!(1.0))).is_err());
    let ok = vma_topn(&row(json!(" 123 "), json!("1.0"))).unwrap();
    assert_eq!(
        (ok[0].process_id.as_str(), ok[0].cmd_name.as_str()),
        ("123", "java-Dx")
    );
    let nested = json!([{"process-id": "1", "process-info": {"process-info": {"user": "x"}}}]);
    assert_eq!(vma_topn(&nested).unwrap()[0].user, "x");
    assert!(vma_load(&json!({"load1": 0.1, "load5": 0.2, "load15": 0.3})).is_err());
    assert!(
        vma_load(&json!({"load1-average": 0.1, "load5-average": "0", "load15-average": "0"}))
            .is_err()
    );
    assert!(vma_lastboot(&json!({"lastboot": 1700000000})).is_err());
    assert!(vma_memory(&json!({"total": "8192", "available": 1})).is_err());
    assert_eq!(
        vma_memory(&json!({"total": 8192, "available": 4096})),
        Ok((4096.0, 50.0))
    );
    assert_eq!(vma_memory(&json!({"total": 8192})).unwrap().1, 100.0);
    assert_eq!(
        vma_check_fs(r#"{"return":{"result":"/dev/vda1 on / type ext4 (ro,relatime)\n"}}"#),
        Ok("ro".into())
    );
    assert!(strip(&json!(5), "x").is_err());
    assert!(ret(&json!({"error": {"class": "GenericError"}})).is_err());
}
