//! Stopping `recording-operator demo` the way `kill`, `timeout` and process managers do
//! (SIGTERM) ends it in order with status 0; killing it outright (SIGKILL) still leaves no
//! process of its behind — in particular not its Azurite, which holds a port and a data folder.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long the demo may take to start, Azurite included, on a busy machine.
const START: Duration = Duration::from_secs(180);
/// How long its children may take to disappear once it is gone.
const CHILDREN_GONE: Duration = Duration::from_secs(10);

/// A process as `/proc/<pid>/stat` shows it; the start time tells a pid's reuse apart.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Proc {
    pid: u32,
    start_time: u64,
    parent: u32,
    group: u32,
    state: char,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Proc {
        pid,
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn all_processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(read_proc)
        .collect()
}

fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// Every process whose parent chain leads to `root`, and every member of their process groups.
fn descendants(root: u32) -> BTreeSet<Proc> {
    let all = all_processes();
    let mut found: BTreeSet<Proc> = BTreeSet::new();
    loop {
        let before = found.len();
        for p in &all {
            let parent_is_ours = p.parent == root || found.iter().any(|d| d.pid == p.parent);
            let group_is_ours = found.iter().any(|d| d.pid == p.group);
            if parent_is_ours || group_is_ours {
                found.insert(p.clone());
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Whether the very process (same pid, same start time) still runs; a zombie has stopped.
fn still_running(p: &Proc) -> bool {
    read_proc(p.pid).is_some_and(|now| now.start_time == p.start_time && now.state != 'Z')
}

/// The pid holding the listening socket on `127.0.0.1:<port>`.
fn listener_of(port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")).then(|| f[9].to_string())
    })?;
    let socket = format!("socket:[{inode}]");
    all_processes().into_iter().map(|p| p.pid).find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&socket)))
    })
}

struct Demo {
    child: Child,
    lines: Receiver<String>,
    output: String,
    dir: PathBuf,
    azurite_pid: u32,
    azurite_port: u16,
    azurite_data: PathBuf,
    /// The demo's processes once it was up, killed when the test ends should it fail.
    seen: BTreeSet<Proc>,
}

impl Demo {
    /// Starts the demo binary and waits until its controllers have the example manifests.
    fn start(name: &str) -> Demo {
        let mut demo = Demo::launch(name);
        // "Azurite:   http://127.0.0.1:<port> (process <pid>, data in <folder>)"
        let line = demo.wait_for_line(|l| l.starts_with("Azurite:"));
        let (url, rest) = line["Azurite:".len()..]
            .trim()
            .split_once(" (process ")
            .unwrap();
        let (pid, data) = rest.trim_end_matches(')').split_once(", data in ").unwrap();
        demo.azurite_port = url.rsplit(':').next().unwrap().parse().unwrap();
        demo.azurite_pid = pid.parse().unwrap();
        demo.azurite_data = PathBuf::from(data);
        demo.wait_for_line(|l| l.starts_with("applied deploy/examples/recording-service.yaml"));
        demo
    }

    /// Starts the demo binary.
    fn launch(name: &str) -> Demo {
        let dir = std::env::temp_dir().join(format!("demo-signals-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_recording-operator"))
            .args(["demo", "--no-auto-consent", "--kubeconfig"])
            .arg(dir.join("demo.kubeconfig"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr")).unwrap(),
            ))
            .spawn()
            .expect("the demo starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            output: String::new(),
            dir,
            azurite_pid: 0,
            azurite_port: 0,
            azurite_data: PathBuf::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Waits until the demo has started Azurite, which has not answered yet (no `Azurite:`
    /// line); returns the demo's processes.
    fn wait_for_azurite_starting(&mut self) -> BTreeSet<Proc> {
        let deadline = Instant::now() + START;
        loop {
            let ours = descendants(self.child.id());
            if let Some(azurite) = ours
                .iter()
                .find(|p| command_line(p.pid).contains("azurite-blob"))
            {
                let line = command_line(azurite.pid);
                let data = line.split(" --location ").nth(1).unwrap();
                self.azurite_pid = azurite.pid;
                self.azurite_data = PathBuf::from(data.split(' ').next().unwrap());
                self.seen = ours.clone();
                return ours;
            }
            assert!(Instant::now() < deadline, "the demo started no Azurite");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + START;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the demo did not print the expected line within {START:?}; it printed:\n{}\nstderr:\n{}",
                    self.output,
                    std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
                ),
            }
        }
    }

    /// The demo's processes now, after checking the Azurite it reported is among them and is
    /// the process that holds its port (not a wrapper around it).
    fn processes(&mut self) -> BTreeSet<Proc> {
        let ours = descendants(self.child.id());
        self.seen = ours.clone();
        assert!(
            ours.iter().any(|p| p.pid == self.azurite_pid),
            "Azurite ({}) is not a child of the demo: {ours:?}",
            self.azurite_pid
        );
        let line = command_line(self.azurite_pid);
        assert!(
            line.contains("azurite") && line.contains(&self.azurite_data.display().to_string()),
            "{line}"
        );
        assert_eq!(listener_of(self.azurite_port), Some(self.azurite_pid));
        ours
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: `kill` only sends a signal, to our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.output.push_str(&line);
                    self.output.push('\n');
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit within {within:?}; it printed:\n{}",
                self.output
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` and expects an orderly stop: status 0, nothing of the demo left, and
    /// Azurite's data folder removed.
    fn stop_in_order(&mut self, signal: libc::c_int, processes: &BTreeSet<Proc>) {
        self.signal(signal);
        let status = self.wait_exit(Duration::from_secs(60));
        assert_eq!(
            status.code(),
            Some(0),
            "{status}; the demo printed:\n{}",
            self.output
        );
        self.assert_all_gone(processes);
        assert!(
            !self.azurite_data.exists(),
            "Azurite's data folder {} was left behind",
            self.azurite_data.display()
        );
    }

    /// Waits until none of `processes` runs any more and nothing on the machine uses the data
    /// folder of the demo's Azurite; names what is left if anything is.
    fn assert_all_gone(&self, processes: &BTreeSet<Proc>) {
        let deadline = Instant::now() + CHILDREN_GONE;
        loop {
            let left: BTreeSet<String> = processes
                .iter()
                .filter(|p| still_running(p))
                .map(|p| format!("{} {}", p.pid, command_line(p.pid)))
                .chain(
                    all_processes()
                        .iter()
                        .filter(|p| p.state != 'Z')
                        .filter(|p| uses(p.pid, &self.azurite_data))
                        .map(|p| format!("{} {}", p.pid, command_line(p.pid))),
                )
                .collect();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes of the demo outlived it by {CHILDREN_GONE:?}: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn uses(pid: u32, folder: &Path) -> bool {
    pid != std::process::id() && command_line(pid).contains(&folder.display().to_string())
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in self.seen.iter().filter(|p| still_running(p)) {
            // SAFETY: only a signal, to a process checked to be the one the demo started.
            unsafe {
                libc::kill(p.pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.azurite_data);
    }
}

/// Stops a running demo with `signal` as a user or a process manager would.
fn stop_with(signal: libc::c_int, name: &str) {
    let mut demo = Demo::start(name);
    let processes = demo.processes();

    demo.stop_in_order(signal, &processes);
    assert!(
        demo.output.contains(&format!(
            "{name}: stopping the operator, Azurite and the simulators"
        )),
        "{}",
        demo.output
    );
    assert!(
        demo.output.trim_end().ends_with("Stopped."),
        "{}",
        demo.output
    );
}

#[test]
fn sigterm_stops_the_demo_and_its_azurite_and_exits_0() {
    stop_with(libc::SIGTERM, "SIGTERM");
}

#[test]
fn ctrl_c_stops_the_demo_and_its_azurite_and_exits_0() {
    stop_with(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_while_azurite_starts_leaves_nothing_behind() {
    let mut demo = Demo::launch("starting");
    let processes = demo.wait_for_azurite_starting();

    demo.stop_in_order(libc::SIGTERM, &processes);
    // Azurite usually takes a second or more to answer; should the demo have been up by the
    // time the signal came, it stopped as it does when running.
    assert!(
        demo.output.contains("SIGTERM: stopped while starting.")
            || demo.output.contains("SIGTERM: stopping the operator"),
        "{}",
        demo.output
    );
}

#[test]
fn sigkill_of_the_demo_takes_its_azurite_with_it() {
    let mut demo = Demo::start("kill");
    let processes = demo.processes();

    demo.signal(libc::SIGKILL);
    let status = demo.wait_exit(Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    demo.assert_all_gone(&processes);
}
