//! guest-get-cputopn-status / guest-get-memtopn-status ordering on synthetic /proc
//! trees: lifetime %CPU on the first call, interval %CPU afterwards, resident memory.

mod common;

use common::{Agent, TempDir};
use qga::commands::topn::{self, CpuTopnArgs, MemTopnArgs, TopProcess};
use qga::ctx::{Ctx, Session};
use qga::protocol::args::parse_args;
use serde_json::json;

/// One synthetic process.
struct Proc {
    pid: u32,
    comm: &'static str,
    cmdline: &'static str,
    uid: u32,
    /// utime + stime, split evenly.
    ticks: u64,
    starttime: u64,
    rss_pages: u64,
    fds: usize,
}

const MEM_TOTAL_KIB: u64 = 2_000_000;

fn page_kib() -> u64 {
    // The agent converts rss pages with the page size of the machine it runs on.
    (qga::sys::sysconf::page_size() / 1024).max(1)
}

fn write_tree(root: &std::path::Path, uptime: f64, procs: &[Proc]) {
    let w = |rel: &str, text: String| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("proc/uptime", format!("{uptime:.2} {:.2}\n", uptime * 1.8));
    w(
        "proc/meminfo",
        format!("MemTotal:       {MEM_TOTAL_KIB} kB\nMemFree:          500000 kB\nBuffers:           20000 kB\nCached:           300000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n"),
    );
    w(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/home/app:/bin/sh\n".into(),
    );
    for p in procs {
        let (ut, st) = (p.ticks - p.ticks / 2, p.ticks / 2);
        w(
            &format!("proc/{}/stat", p.pid),
            format!(
                "{} ({}) S 1 {} {} 0 -1 4202752 100 0 0 0 {ut} {st} 0 0 20 0 1 0 {} {} {} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
                p.pid, p.comm, p.pid, p.pid, p.starttime, p.rss_pages * 4096 * 3, p.rss_pages
            ),
        );
        w(
            &format!("proc/{}/status", p.pid),
            format!(
                "Name:\t{}\nState:\tS (sleeping)\nUid:\t{u}\t{u}\t{u}\t{u}\n",
                p.comm,
                u = p.uid
            ),
        );
        w(
            &format!("proc/{}/cmdline", p.pid),
            p.cmdline.replace(' ', "\0"),
        );
        let fd = root.join(format!("proc/{}/fd", p.pid));
        std::fs::create_dir_all(&fd).unwrap();
        for i in 0..p.fds {
            let link = fd.join(i.to_string());
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink("/dev/null", link).unwrap();
            }
        }
    }
}

fn procs(ticks: [u64; 4]) -> Vec<Proc> {
    let p = |pid, comm, cmdline, uid, ticks, starttime, rss_pages, fds| Proc {
        pid,
        comm,
        cmdline,
        uid,
        ticks,
        starttime,
        rss_pages,
        fds,
    };
    vec![
        p(1, "init", "/sbin/init", 0, ticks[0], 1, 400, 12),
        p(
            200,
            "java",
            "java -Xmx1g -jar app.jar",
            1000,
            ticks[1],
            5000,
            60000,
            140,
        ),
        p(
            300,
            "mysqld",
            "/usr/sbin/mysqld --basedir=/usr",
            4242,
            ticks[2],
            2000,
            90000,
            55,
        ),
        p(400, "kworker/0:1", "", 0, ticks[3], 10, 0, 0),
    ]
}

fn cpu_top(ctx: &Ctx, s: &mut Session, n: serde_json::Value) -> Vec<TopProcess> {
    let args: CpuTopnArgs = parse_args(json!({ "cputopn-num": n })).unwrap();
    topn::get_cputopn_status(ctx, s, args).unwrap()
}

fn pids(list: &[TopProcess]) -> Vec<&str> {
    list.iter().map(|p| p.process_id.as_str()).collect()
}

#[test]
fn first_call_ranks_by_cpu_since_process_start() {
    let dir = TempDir::new("topn-first");
    // At 1000 s uptime: mysqld used 5000 ticks over its life, java 6000 over a shorter one.
    write_tree(dir.path(), 1000.0, &procs([300, 6000, 5000, 900]));
    let ctx = Ctx::with_root(dir.path());
    let mut s = Session::default();
    let top = cpu_top(&ctx, &mut s, json!("3"));
    assert_eq!(pids(&top), ["200", "300", "400"]);
    let hz = qga::proc::clock_ticks() as f64;
    let java = 6000.0 * 100.0 / (1000.0 * hz - 5000.0);
    assert_eq!(top[0].process_info.cpu_util, format!("{java:.2}"));
    let info = &top[0].process_info;
    assert_eq!(
        (info.user.as_str(), info.open_files.as_str()),
        ("app", "140")
    );
    assert_eq!(info.cmd_name, "java -Xmx1g -jar app.jar");
    let mem = 60000.0 * page_kib() as f64 * 100.0 / MEM_TOTAL_KIB as f64;
    assert_eq!(info.mem_util, format!("{mem:.2}"));
    assert_eq!(top[1].process_info.user, "4242", "no passwd entry: the uid");
    assert_eq!(top[2].process_info.cmd_name, "[kworker/0:1]");
}

#[test]
fn later_calls_rank_by_cpu_over_the_interval() {
    let dir = TempDir::new("topn-interval");
    write_tree(dir.path(), 1000.0, &procs([300, 6000, 5000, 900]));
    let ctx = Ctx::with_root(dir.path());
    let mut s = Session::default();
    cpu_top(&ctx, &mut s, json!(5));
    // Ten seconds later init was busy (+800 ticks), java idle, mysqld +100.
    write_tree(dir.path(), 1010.0, &procs([1100, 6000, 5100, 900]));
    let top = cpu_top(&ctx, &mut s, json!(5));
    assert_eq!(
        pids(&top),
        ["1", "300", "200", "400"],
        "idle ones by memory"
    );
    let hz = qga::proc::clock_ticks() as f64;
    assert_eq!(
        top[0].process_info.cpu_util,
        format!("{:.2}", 800.0 * 100.0 / (10.0 * hz))
    );
    assert_eq!(top[2].process_info.cpu_util, "0.00");
}

#[test]
fn memtopn_ranks_by_resident_memory_and_defaults_to_five() {
    let dir = TempDir::new("topn-mem");
    write_tree(dir.path(), 1000.0, &procs([300, 6000, 5000, 900]));
    let ctx = Ctx::with_root(dir.path());
    let mut s = Session::default();
    let args: MemTopnArgs = parse_args(json!({})).unwrap();
    let top = topn::get_memtopn_status(&ctx, &mut s, args).unwrap();
    assert_eq!(pids(&top), ["300", "200", "1", "400"]);
    let args: MemTopnArgs = parse_args(json!({"memtopn-num": 1})).unwrap();
    assert_eq!(
        pids(&topn::get_memtopn_status(&ctx, &mut s, args).unwrap()),
        ["300"]
    );
}

#[test]
fn an_empty_proc_is_an_error_not_an_empty_list() {
    let dir = TempDir::new("topn-empty");
    write_tree(dir.path(), 1000.0, &[]);
    let ctx = Ctx::with_root(dir.path());
    let mut s = Session::default();
    let args: CpuTopnArgs = parse_args(json!({})).unwrap();
    assert!(topn::get_cputopn_status(&ctx, &mut s, args).is_err());
}

#[test]
fn topn_through_the_binary_keeps_the_interval_between_requests() {
    let dir = TempDir::new("topn-e2e");
    write_tree(dir.path(), 1000.0, &procs([300, 6000, 5000, 900]));
    let agent = Agent::with_sysroot(dir.path(), &[]);
    let first = agent.call("guest-get-cputopn-status", json!({"cputopn-num": "2"}));
    assert_eq!(first[0]["process-id"], "200");
    write_tree(dir.path(), 1010.0, &procs([1100, 6000, 5100, 900]));
    let second = agent.call("guest-get-cputopn-status", json!({"cputopn-num": "2"}));
    assert_eq!(second[0]["process-id"], "1");
    assert_eq!(second.as_array().unwrap().len(), 2);
}
