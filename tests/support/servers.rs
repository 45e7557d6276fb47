//! Servers the integration tests and the benches start for the whole process: a free loopback
//! port, a process tied to the test process's life, and PostgreSQL from the system's binaries
//! (`initdb` into a temp folder, as the `postgres` user when run as root).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server for the whole test process: from a thread that lives as long as the
/// process, so that the server gets `signal` when the thread that started it ends
/// (PR_SET_PDEATHSIG), which is when the tests end however they end, not when the first test
/// that used it does.
pub fn spawn_for_the_test_process(mut command: Command, signal: i32) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let (started, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: only an async-signal-safe call between fork and exec. It runs after a
        // change of user the command asks for (`Command::uid`), which clears the setting.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, signal);
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| e.to_string());
        let failed = child.is_err();
        started.send(child.map(|_| ())).unwrap();
        if !failed {
            loop {
                std::thread::park();
            }
        }
    });
    result.recv().unwrap()
}

/// A PostgreSQL server on a loopback port, trusting every local connection.
pub struct Postgres {
    pub bin: PathBuf,
    pub port: u16,
}

impl Postgres {
    /// Starts one, for the rest of the process (keep it in a static).
    pub fn start() -> Postgres {
        let bin = server_binaries();
        // Under the system's temp folder: the server's user must reach it (a home folder
        // such as /root is closed to it).
        let root = std::env::temp_dir().join("dfstream-postgres-tests");
        remove_stale(&root);
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let user = as_user();
        if let Some((uid, gid)) = user {
            // The server refuses to run as root: its folder belongs to `postgres`.
            use std::os::unix::fs::PermissionsExt;
            for folder in [&root, &dir] {
                std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null());
        let out = run_as(initdb, user).output().unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap());
        // SIGQUIT: PostgreSQL's immediate shutdown, which also ends its backends.
        if let Err(e) = spawn_for_the_test_process(run_as(postgres, user), libc::SIGQUIT) {
            panic!("cannot start PostgreSQL: {e}");
        }
        let server = Postgres { bin, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.psql("postgres", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start; its log: {}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

/// The newest `/usr/lib/postgresql/VERSION/bin` with a server in it.
fn server_binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "no PostgreSQL server under /usr/lib/postgresql: the PostgreSQL sink's tests need one \
         (apt-get install postgresql, as .ci/run does)",
    )
}

/// Running as root: the `postgres` user's ids, to run the server as.
fn as_user() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls; getpwnam's result is read before any other call.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !entry.is_null(),
            "running as root without a postgres user to run PostgreSQL as"
        );
        Some(((*entry).pw_uid, (*entry).pw_gid))
    }
}

fn run_as(mut command: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    command
}

/// Folders of earlier test processes that are gone (their servers died with them).
fn remove_stale(root: &Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let alive = entry
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Postgres {
    /// Runs `sql` with psql; rows as tab-separated lines.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A new, empty database: its name.
    pub fn new_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap();
        name
    }

    /// The URL of database `db` (no password: the server trusts local connections).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}
