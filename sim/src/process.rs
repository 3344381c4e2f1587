//! Child processes of the harnesses and the demo (Azurite, and whatever server comes next) that
//! never outlive the process that started them.
//!
//! [`spawn_child`] ties a child to its parent three ways:
//! - on Linux the kernel kills the child when this process dies, however it dies (SIGKILL, a
//!   crash): `PR_SET_PDEATHSIG` is set between fork and exec. That signal fires when the
//!   *thread* that forked the child ends, not the process, so every child is forked from one
//!   thread that lives as long as the process — a harness started from a short-lived thread
//!   (a blocking-pool thread, a test's thread) keeps its child until it stops it;
//! - the child leads its own process group, so stopping it reaches anything it started in turn
//!   (a shell wrapper's program, a package manager's scripts), and a terminal's Ctrl-C reaches
//!   only this process, which then stops its children in order;
//! - dropping a [`ChildProcess`] that still runs kills its group.
//!
//! What runs must be the process that does the work: `node_modules/.bin/azurite-blob` is a node
//! script whose `#!/usr/bin/env node` line makes `env` exec node in place, so the child's pid is
//! the node process that holds the port.

use std::io;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// A child started by [`spawn_child`]; its process group is killed when it is dropped running.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    /// The child's pid, which is also its process group id, while it has not been reaped: only
    /// then is the id certain to be ours to signal.
    group: Option<libc::pid_t>,
}

/// Starts `command` as a child that cannot outlive this process (see the module comment).
///
/// Must be called within a Tokio runtime, which then watches the child's exit.
pub fn spawn_child(mut command: Command) -> io::Result<ChildProcess> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| io::Error::other("spawn_child must be called within a Tokio runtime"))?;
    command.kill_on_drop(true).process_group(0);
    die_with_parent(&mut command);
    let (reply, answer) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(SpawnRequest {
            command,
            runtime,
            reply,
        })
        .map_err(|_| io::Error::other("the process spawner thread is gone"))?;
    let child = answer
        .recv()
        .map_err(|_| io::Error::other("the process spawner thread is gone"))??;
    let group = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok());
    Ok(ChildProcess { child, group })
}

impl ChildProcess {
    /// The child's pid while it has not been reaped.
    pub fn id(&self) -> Option<u32> {
        self.group.and_then(|pid| u32::try_from(pid).ok())
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.group = None;
        }
        Ok(status)
    }

    /// Waits for the child to exit and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await;
        self.group = None;
        status
    }

    /// Stops the child and everything in its process group, and reaps it: SIGTERM first, so a
    /// server can write its state to disk, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal_group(libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
            return status;
        }
        self.kill().await
    }

    /// Kills the child's process group at once and reaps the child.
    pub async fn kill(&mut self) -> io::Result<ExitStatus> {
        self.signal_group(libc::SIGKILL);
        self.wait().await
    }

    /// What the child wrote to its piped stdout and stderr, read to the end: call it once the
    /// child has exited (or been stopped), else it waits for the child to close them.
    pub async fn output(&mut self) -> String {
        let mut output = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut output).await;
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut output).await;
        }
        output.trim().to_string()
    }

    fn signal_group(&self, signal: libc::c_int) {
        if let Some(group) = self.group {
            // SAFETY: `killpg` only sends a signal. The group id is our child's pid, which we
            // have not reaped, so no other process or group can have been given that id.
            unsafe {
                libc::killpg(group, signal);
            }
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(None)) {
            self.signal_group(libc::SIGKILL);
        }
        // Tokio reaps a dropped child in the background (`kill_on_drop` also kills the child).
    }
}

/// Asks the kernel to SIGKILL the child when its parent (the spawner thread) ends.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (`prctl`, `getppid`) and builds errors without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere the child's process group and `kill_on_drop` are all there is.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

struct SpawnRequest {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The thread every child is forked from; it waits for requests for the life of the process.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for mut request in incoming {
                    let _runtime = request.runtime.enter();
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .expect("starting the child-spawner thread");
        Mutex::new(requests)
    })
}

/// How a server started as a child fared while [`wait_until_serving`] waited for it.
pub enum Startup {
    /// It answers.
    Serving,
    /// It exited first; what it printed.
    Exited(String),
    /// It did not answer in time and was killed; what it printed.
    TimedOut(String),
}

/// Polls `serving` every 100 ms until it says the child's server answers, the child exits, or
/// `timeout` passes (then the child is killed).
pub async fn wait_until_serving<F, Fut>(
    child: &mut ChildProcess,
    timeout: Duration,
    mut serving: F,
) -> Startup
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if serving().await {
            return Startup::Serving;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Startup::Exited(child.output().await);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Startup::TimedOut(child.output().await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The npm-installed program `node_modules/.bin/<bin>` in this crate's folder and above it (the
/// workspace root, where `scripts/install-test-deps.sh` installs), then in the current
/// directory and above, unless the environment variable `env` names it. The error says where it
/// looked.
pub fn find_node_tool(env: &str, bin: &str) -> Result<std::path::PathBuf, String> {
    use std::path::{Path, PathBuf};
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let current_dir = std::env::current_dir().ok();
    let starts: Vec<&Path> = std::iter::once(manifest_dir.as_path())
        .chain(current_dir.as_deref())
        .collect();
    let relative = Path::new("node_modules/.bin").join(bin);
    for start in &starts {
        for dir in start.ancestors() {
            let candidate = dir.join(&relative);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(starts
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and "))
}

/// A port on 127.0.0.1 free at the time of asking, for a child server to listen on.
pub fn free_loopback_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit(')').next()?.split_whitespace().next()?;
                Some(state != "Z" && state != "X")
            })
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn stopping_a_child_stops_what_it_started_too() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(std::process::Stdio::piped());
        let mut child = spawn_child(command).unwrap();
        let shell = child.id().unwrap();
        let mut line = String::new();
        let stdout = child.child.stdout.as_mut().unwrap();
        let mut byte = [0u8; 1];
        while stdout.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let sleeper: u32 = line.trim().parse().unwrap();
        assert!(alive(shell) && alive(sleeper));

        let status = child.stop(Duration::from_secs(5)).await.unwrap();
        assert!(!status.success());
        assert_eq!(child.id(), None);
        assert!(!alive(shell), "the shell outlived stop()");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(sleeper) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive(sleeper), "the shell's own child outlived stop()");
    }

    #[tokio::test]
    async fn a_dropped_child_is_killed() {
        let mut command = Command::new("sleep");
        command.arg("300");
        let pid = spawn_child(command).unwrap().id().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive(pid), "a dropped child kept running");
    }

    #[test]
    fn a_child_outlives_the_thread_that_asked_for_it() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        let mut child = std::thread::spawn(move || {
            let _entered = handle.enter();
            let mut command = Command::new("sleep");
            command.arg("300");
            spawn_child(command).unwrap()
        })
        .join()
        .unwrap();
        // The asking thread has ended; a parent-death signal tied to it would have fired.
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(child.id().unwrap()));
        runtime.block_on(async {
            child.stop(Duration::from_secs(5)).await.unwrap();
        });
    }

    #[test]
    fn spawning_outside_a_runtime_is_a_clear_error() {
        let error = spawn_child(Command::new("true")).unwrap_err();
        assert!(error.to_string().contains("Tokio runtime"), "{error}");
    }
}
