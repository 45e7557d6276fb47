//! Exactly-once across failures: SIGKILL at random moments, damaged checkpoint files, and
//! writes that fail (read-only directories, a file-size limit). After each, a restart must
//! give the batch oracle's answer exactly, and `dfstream verify` must say OK.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::{
    Line, Workspace, assert_logged, assert_ok, batch_query, bin, lines_of, read_parquet, repo,
    rows, runtime, sorted_rows, stderr, stdout,
};

const WORDS: &[&str] = &[
    "alpha", "beta", "Gamma", "delta", "café", "x1", "the", "THE", "stream",
];

pub(crate) fn random_text(rng: &mut StdRng) -> String {
    let mut text = String::new();
    for _ in 0..rng.random_range(1..6) {
        for w in 0..rng.random_range(0..8) {
            if w > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        text.push('\n');
    }
    text
}

/// The complete wordcount result over every file in the input directory.
pub(crate) fn oracle(ws: &Workspace) -> Vec<String> {
    let mut lines: Vec<Line> = Vec::new();
    for entry in std::fs::read_dir(&ws.input).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with('.') {
            continue;
        }
        lines.extend(lines_of(
            &std::fs::read(&path).unwrap(),
            &ws.file_column(&name),
            0,
        ));
    }
    let sql = std::fs::read_to_string(repo("sql/wordcount.sql")).unwrap();
    sorted_rows(&runtime().block_on(batch_query(&sql, &lines, &[], 2)))
}

fn verify(ws: &Workspace) -> Output {
    verify_query(ws, "sql/wordcount.sql", &[])
}

fn verify_query(ws: &Workspace, query: &str, params: &[&str]) -> Output {
    verify_over(ws, &repo(query), &ws.input, params)
}

/// `dfstream verify QUERY` over the workspace says OK (exit 0); `what` names the case.
pub(crate) fn assert_verified(ws: &Workspace, query: &Path, what: &str) -> Output {
    let checked = verify_over(ws, query, &ws.input, &[]);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{what}\n{}{}",
        crate::util::stdout(&checked),
        crate::util::stderr(&checked)
    );
    checked
}

/// `dfstream verify QUERY` over `input` with the workspace's output and checkpoint.
pub(crate) fn verify_over(ws: &Workspace, query: &Path, input: &Path, params: &[&str]) -> Output {
    verify_with(ws, query, input, params, &[])
}

/// [`verify_over`] with more flags (e.g. `--engine`).
pub(crate) fn verify_with(
    ws: &Workspace,
    query: &Path,
    input: &Path,
    params: &[&str],
    flags: &[&str],
) -> Output {
    Command::new(bin())
        .arg("verify")
        .arg(query)
        .args(params.iter().flat_map(|p| ["--param", p]))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&ws.output)
        .arg("--checkpoint")
        .arg(&ws.checkpoint)
        .args(flags)
        .output()
        .unwrap()
}

pub(crate) fn assert_exact(ws: &Workspace, context: &str) {
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output.join("result.parquet"))),
        oracle(ws),
        "{context}"
    );
    let out = verify(ws);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("OK"),
        "{context}: {}",
        stdout(&out)
    );
}

pub(crate) fn seed() -> u64 {
    std::env::var("DFSTREAM_SEED").map_or(7, |s| s.parse().unwrap())
}

const RUN_ARGS: &[&str] = &[
    "--trigger",
    "available-now",
    "--max-files-per-trigger",
    "1",
    "--snapshot-interval",
    "3",
    "--retain-batches",
    "2",
    "--no-console",
];

/// [`RUN_ARGS`], committing every batch on its own so that kills land around commits too.
fn every_batch_committed() -> Vec<&'static str> {
    RUN_ARGS
        .iter()
        .copied()
        .chain(["--checkpoint-interval", "0"])
        .collect()
}

/// How a run that was to be killed at a random moment ended.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Run {
    /// It finished before the kill.
    Completed,
    /// Killed outside a batch (starting up, recovering, idle).
    Killed,
    /// Killed between a batch's offsets and its commit.
    KilledMidBatch,
}

impl Run {
    pub(crate) fn killed(self) -> bool {
        self != Run::Completed
    }

    pub(crate) fn mid_batch(self) -> bool {
        self == Run::KilledMidBatch
    }
}

/// Starts the job and SIGKILLs it at a random moment up to `max_wait_ms` later if it still
/// runs. Three times in four the wait starts once the job has begun a batch (its offsets
/// written), so that a slow start-up on a loaded machine does not take every kill; otherwise
/// at the start, so that kills land in start-up and recovery too. The steps of a batch
/// (offsets, query, sink, state, commit) are spread apart so that kills land inside each.
pub(crate) fn run_and_kill_at_random(
    ws: &Workspace,
    query: &Path,
    args: &[&str],
    rng: &mut StdRng,
    max_wait_ms: u64,
) -> Run {
    run_and_kill_at_random_with_pauses(ws, query, args, rng, max_wait_ms, 4)
}

/// [`run_and_kill_at_random`] with `pause_ms` between the steps of a batch.
fn run_and_kill_at_random_with_pauses(
    ws: &Workspace,
    query: &Path,
    args: &[&str],
    rng: &mut StdRng,
    max_wait_ms: u64,
    pause_ms: u64,
) -> Run {
    let started = std::time::SystemTime::now();
    let mut child = ws
        .quiet(query, args)
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", pause_ms.to_string())
        .spawn()
        .unwrap();
    if rng.random_range(0..4) > 0 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ws.offsets_written_since(started) {
            if child.try_wait().unwrap().is_some() {
                return Run::Completed;
            }
            assert!(std::time::Instant::now() < deadline, "no batch began");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(rng.random_range(0..max_wait_ms)));
    if child.try_wait().unwrap().is_some() {
        return Run::Completed;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    if ws.mid_batch_since(started) {
        Run::KilledMidBatch
    } else {
        Run::Killed
    }
}

#[test]
fn sigkill_at_random_moments_keeps_the_result_exact() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let ws = Workspace::new();
    let mut next_file = 0;
    let mut kills = 0;
    let mut completed = 0;
    let mut mid_batch = 0;
    for _ in 0..200 {
        if kills >= 24 {
            break;
        }
        for _ in 0..rng.random_range(1..3) {
            ws.add_file(&format!("f{next_file:04}.txt"), random_text(&mut rng));
            next_file += 1;
        }
        let wordcount = repo("sql/wordcount.sql");
        let run = run_and_kill_at_random(&ws, &wordcount, &every_batch_committed(), &mut rng, 150);
        if run.killed() {
            kills += 1;
            mid_batch += usize::from(run.mid_batch());
        } else {
            completed += 1;
        }
    }
    assert!(kills >= 20, "only {kills} kills (seed {seed})");
    // Kills before the job got to a batch test nothing; enough must land inside one.
    assert!(
        mid_batch >= 5,
        "only {mid_batch} of {kills} kills fell between a batch's offsets and its commit \
         (seed {seed})"
    );
    let out = ws.run(&repo("sql/wordcount.sql"), &every_batch_committed());
    assert_ok(&out);
    assert_exact(
        &ws,
        &format!("after {kills} SIGKILLs and {completed} completed runs, seed {seed}"),
    );
}

/// A moment inside a batch at which a kill is aimed: the checkpoint (or output) file whose
/// appearance marks it, for batch `n`.
struct Boundary {
    what: &'static str,
    marker: fn(&Workspace, u64) -> std::path::PathBuf,
}

const BOUNDARIES: &[Boundary] = &[
    Boundary {
        what: "after offsets/N is written, before the query runs",
        marker: |ws, n| ws.checkpoint.join(format!("offsets/{n}")),
    },
    Boundary {
        what: "after the sink wrote the batch's file, before commits/N",
        marker: |ws, n| ws.output.join(format!("batch-{n:012}.parquet")),
    },
    Boundary {
        what: "after the batch's snapshots (state and sources), before commits/N",
        marker: |ws, n| ws.checkpoint.join(format!("sources/{n}.snapshot")),
    },
];

/// Starts the job with long pauses between the steps of a batch, SIGKILLs it as soon as
/// `marker` exists, and returns the restart's log. Panics unless the kill landed where it was
/// aimed (the marker there, the batch not committed) and the restart re-ran the batch.
fn kill_at(ws: &Workspace, args: &[&str], boundary: &Boundary, batch: u64) -> String {
    let query = repo("sql/wordcount.sql");
    let marker = (boundary.marker)(ws, batch);
    let mut child = ws
        .quiet(&query, args)
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "250")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before {}",
            marker.display()
        );
        assert!(std::time::Instant::now() < deadline, "{}", boundary.what);
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let context = format!("kill {} of batch {batch}", boundary.what);
    assert!(marker.exists(), "{context}");
    assert!(
        !ws.commits().contains(&batch),
        "{context}: it was committed"
    );
    let restart = ws.run(&query, args);
    assert_ok(&restart);
    let log = stderr(&restart);
    assert!(
        log.contains(&format!("re-running batch {batch} ")),
        "{context}: the restart did not re-run it:\n{log}"
    );
    log
}

#[test]
fn sigkill_aimed_at_each_step_boundary_replays_the_batch_exactly() {
    // Every batch snapshots its state and is committed on its own; update mode writes a file a
    // batch, which marks the moment between the sink and the commit.
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--snapshot-interval",
        "1",
        "--checkpoint-interval",
        "0",
        "--mode",
        "update",
        "--no-console",
    ];
    let mut rng = StdRng::seed_from_u64(seed() + 9);
    for boundary in BOUNDARIES {
        let ws = Workspace::new();
        for batch in 0..3u64 {
            // At least one word: an update-mode batch without rows writes no file.
            let text = random_text(&mut rng) + "stream\n";
            ws.add_file(&format!("f{batch}.txt"), text);
            kill_at(&ws, &args, boundary, batch);
        }
        assert_eq!(ws.commits(), [0, 1, 2], "{}", boundary.what);
        assert_eq!(
            applied_updates(&ws),
            oracle(&ws),
            "after kills {}",
            boundary.what
        );
    }
}

/// Flips a byte of the state file (delta or snapshot) of the newest batch that has one;
/// returns whether there was one.
pub(crate) fn damage_newest_state(checkpoint: &Path) -> bool {
    let newest = std::fs::read_dir(checkpoint.join("state"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let batch: u64 = name.split('.').next()?.parse().ok()?;
            Some((batch, name.ends_with(".snapshot"), path))
        })
        .max();
    match newest {
        Some((_, _, path)) if std::fs::metadata(&path).is_ok_and(|m| m.len() > 8) => {
            flip(&path);
            true
        }
        _ => false,
    }
}

#[test]
fn sigkill_storm_with_damaged_newest_state_files_stays_exact() {
    let seed = seed() + 5;
    let mut rng = StdRng::seed_from_u64(seed);
    let ws = Workspace::new();
    // Enough history that a fall-back past a damaged snapshot finds the one before it.
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--snapshot-interval",
        "3",
        "--retain-batches",
        "6",
        "--checkpoint-interval",
        "0",
        "--no-console",
    ];
    let (mut kills, mut damaged) = (0, 0);
    for round in 0..200 {
        if kills >= 16 && damaged >= 5 {
            break;
        }
        ws.add_file(&format!("f{round:04}.txt"), random_text(&mut rng));
        if run_and_kill_at_random(&ws, &repo("sql/wordcount.sql"), &args, &mut rng, 150).killed() {
            kills += 1;
        }
        if round % 3 == 2 && damage_newest_state(&ws.checkpoint) {
            damaged += 1;
            // A run that gets through recovers around the damage and writes a fresh snapshot
            // (else damage piles up until no snapshot is left, a clear error but not exact).
            ws.add_file(&format!("g{round:04}.txt"), random_text(&mut rng));
            assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
        }
    }
    assert!(
        kills >= 10 && damaged >= 5,
        "{kills} kills, {damaged} damaged (seed {seed})"
    );
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    assert_exact(
        &ws,
        &format!("after {kills} SIGKILLs and {damaged} damaged state files, seed {seed}"),
    );
}

#[test]
fn sigkill_in_update_mode_leaves_each_batch_once() {
    let seed = seed() + 1;
    let mut rng = StdRng::seed_from_u64(seed);
    let ws = Workspace::new();
    let args: Vec<&str> = RUN_ARGS
        .iter()
        .copied()
        .chain(["--mode", "update"])
        .collect();
    let (mut kills, mut mid_batch) = (0, 0);
    for i in 0..200 {
        if kills >= 20 {
            break;
        }
        ws.add_file(&format!("f{i:04}.txt"), random_text(&mut rng));
        let run = run_and_kill_at_random(&ws, &repo("sql/wordcount.sql"), &args, &mut rng, 120);
        kills += usize::from(run.killed());
        mid_batch += usize::from(run.mid_batch());
    }
    assert!(
        kills >= 20 && mid_batch >= 3,
        "{kills} kills, {mid_batch} mid-batch (seed {seed})"
    );
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    assert_eq!(
        applied_updates(&ws),
        oracle(&ws),
        "{kills} kills, seed {seed}"
    );
}

/// The word count that update mode's batch files give when applied in batch order (each
/// row replaces the word's earlier count); panics if a batch file holds a word twice.
fn applied_updates(ws: &Workspace) -> Vec<String> {
    let mut latest = std::collections::BTreeMap::new();
    let mut names: Vec<_> = std::fs::read_dir(&ws.output)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    names.sort();
    for path in &names {
        let mut words = std::collections::HashSet::new();
        for row in rows(&read_parquet(path)) {
            let mut cells = row.splitn(3, '|');
            let (_batch, word, count) = (
                cells.next().unwrap(),
                cells.next().unwrap(),
                cells.next().unwrap(),
            );
            assert!(
                words.insert(word.to_string()),
                "{word} twice in {}",
                path.display()
            );
            latest.insert(word.to_string(), format!("{word}|{count}"));
        }
    }
    latest.into_values().collect()
}

/// Runs six batches, then damages checkpoint files with `damage` and restarts.
fn damaged_restart(
    damage: impl Fn(&Path),
    snapshot_interval: &str,
    retain: &str,
) -> (Workspace, Output) {
    let ws = Workspace::new();
    let mut rng = StdRng::seed_from_u64(seed() + 2);
    for i in 0..6 {
        ws.add_file(&format!("f{i}.txt"), random_text(&mut rng));
        std::thread::sleep(Duration::from_millis(3));
    }
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--no-console",
        "--snapshot-interval",
        snapshot_interval,
        "--retain-batches",
        retain,
        "--checkpoint-interval",
        "0",
    ];
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    assert_eq!(ws.commits().last(), Some(&5));
    damage(&ws.checkpoint);
    ws.add_file("late.txt", "late arrival\n");
    let out = ws.run(&repo("sql/wordcount.sql"), &args);
    (ws, out)
}

pub(crate) fn truncate(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

pub(crate) fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_newest_checkpoint_files_fall_back_and_replay() {
    // (what, snapshot interval, damage): with interval 3 batch 5 has a snapshot, with 4 the
    // newest snapshot is batch 3 and batches 4 and 5 are deltas.
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, &str, Damage)> = vec![
        (
            "truncated newest commit",
            "3",
            Box::new(|c: &Path| truncate(&c.join("commits/5"))),
        ),
        (
            "flipped newest state delta",
            "4",
            Box::new(|c: &Path| flip(&c.join("state/5.delta"))),
        ),
        (
            "flipped newest state snapshot",
            "3",
            Box::new(|c: &Path| flip(&c.join("state/5.snapshot"))),
        ),
        (
            "truncated newest sources snapshot",
            "3",
            Box::new(|c: &Path| truncate(&c.join("sources/5.snapshot"))),
        ),
        (
            "truncated newest offsets",
            "4",
            Box::new(|c: &Path| truncate(&c.join("offsets/5"))),
        ),
        (
            "newest commit, delta and offsets all damaged",
            "4",
            Box::new(|c: &Path| {
                flip(&c.join("commits/5"));
                flip(&c.join("state/5.delta"));
                truncate(&c.join("offsets/5"));
            }),
        ),
        (
            "offsets of the batch before the newest damaged",
            "4",
            Box::new(|c: &Path| flip(&c.join("offsets/4"))),
        ),
    ];
    for (what, interval, damage) in cases {
        let (ws, out) = damaged_restart(damage, interval, "100");
        assert_ok(&out);
        assert!(
            stderr(&out).contains("damaged"),
            "{what}: a warning names the damage:\n{}",
            stderr(&out)
        );
        assert_exact(&ws, what);
    }
}

#[test]
fn nothing_good_left_is_a_clear_error_not_a_wrong_count() {
    // Little history is kept, so once every state file is damaged nothing can be rebuilt.
    let (ws, out) = damaged_restart(
        |c: &Path| {
            for entry in std::fs::read_dir(c.join("state")).unwrap() {
                flip(&entry.unwrap().path());
            }
        },
        "2",
        "0",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_logged(&out, "no good state");
    let _ = ws;
    // A damaged metadata file is refused too.
    let (_ws, out) = damaged_restart(|c: &Path| flip(&c.join("metadata")), "3", "100");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_logged(&out, "metadata is damaged");
}

/// Runs `command` with `dir` read-only for it. As root, which ignores permissions, the
/// command runs in its own mount namespace where `dir` is a read-only bind mount (nothing
/// outside the child sees it); otherwise `dir` loses its write permissions while it runs.
/// Panics if neither can be done: the test must not pass without the fault.
fn run_with_read_only(dir: &Path, command: &Command) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let mut wrapped;
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        const BIND_READ_ONLY: &str = "mount --bind \"$1\" \"$1\" && \
             mount -o remount,ro,bind \"$1\" \"$1\" && shift && exec \"$@\"";
        wrapped = Command::new("unshare");
        wrapped
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                BIND_READ_ONLY,
                "sh",
            ])
            .arg(dir)
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        wrapped = Command::new(command.get_program());
        wrapped.args(command.get_args()).envs(
            command
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        );
    }
    let out = wrapped.output().unwrap();
    if !as_root {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = stderr(&out);
    assert!(
        !log.contains("unshare:") && !log.contains("mount:"),
        "cannot make {} read-only for the job (a mount namespace needs CAP_SYS_ADMIN):\n{log}",
        dir.display()
    );
    out
}

/// A workspace with two batches done.
fn two_batches_done() -> (Workspace, Vec<&'static str>) {
    let ws = Workspace::new();
    let args = vec!["--trigger", "available-now", "--no-console"];
    ws.add_file("a.txt", "one two two\n");
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    ws.add_file("b.txt", "two three\n");
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    (ws, args)
}

/// Checkpoint files and their contents, to show a failed run left them alone.
fn checkpoint_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["", "offsets", "commits", "state", "sources"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().unwrap() != "lock" {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_read_only_output_or_checkpoint_fails_clearly_and_recovers_exactly() {
    for target in ["output", "checkpoint/commits", "checkpoint/offsets"] {
        let (ws, args) = two_batches_done();
        ws.add_file("c.txt", "three four\n");
        let dir = ws.dir.path().join(target);
        let before = checkpoint_files(&ws.checkpoint);
        let out = run_with_read_only(&dir, &ws.command(&repo("sql/wordcount.sql"), &args));
        // Refused at start (code 2) or failed at the first write (code 1), naming the place.
        let log = stderr(&out);
        assert!(matches!(out.status.code(), Some(1 | 2)), "{target}: {log}");
        assert!(
            log.contains("dfstream: error:")
                && log.contains(&dir.display().to_string())
                && (log.contains("Read-only file system") || log.contains("Permission denied")),
            "{target}: {log}"
        );
        if target != "checkpoint/offsets" {
            // The batch's offsets may be recorded; nothing committed changed.
            let after = checkpoint_files(&ws.checkpoint);
            for file in &before {
                assert!(after.contains(file), "{target}: {} changed", file.0);
            }
        } else {
            assert_eq!(checkpoint_files(&ws.checkpoint), before, "{target}");
        }
        assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
        assert_exact(&ws, target);
    }
}

#[test]
fn a_file_size_limit_that_cuts_a_write_short_fails_clearly_and_recovers_exactly() {
    let (ws, args) = two_batches_done();
    // Enough distinct words that the new result file outgrows the limit.
    let text: String = (0..3000).map(|i| format!("word{i} ")).collect();
    ws.add_file("c.txt", text);
    let before = checkpoint_files(&ws.checkpoint);
    let out = ws
        .command(&repo("sql/wordcount.sql"), &args)
        .pre_exec_fsize_limit(16 * 1024)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_logged(&out, "File too large");
    let after = checkpoint_files(&ws.checkpoint);
    for file in &before {
        assert!(after.contains(file), "{} changed", file.0);
    }
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    assert_exact(&ws, "after the file-size limit is lifted");
}

pub(crate) trait FsizeLimit {
    fn pre_exec_fsize_limit(&mut self, bytes: u64) -> &mut Self;
}

impl FsizeLimit for Command {
    /// Like `ulimit -f`: writes past `bytes` fail in the child.
    fn pre_exec_fsize_limit(&mut self, bytes: u64) -> &mut Self {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            self.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

#[test]
fn a_second_process_on_one_checkpoint_is_refused() {
    let ws = Workspace::new();
    let mut first = ws
        .quiet(
            &repo("sql/wordcount.sql"),
            &["--trigger", "0", "--no-console"],
        )
        .spawn()
        .unwrap();
    ws.add_file("a.txt", "x\n");
    assert!(ws.wait_for_commit(0, Duration::from_secs(20)));
    let second = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert_logged(&second, &format!("pid {}", first.id()));
    let reset = Command::new(bin())
        .args(["reset", "--checkpoint"])
        .arg(&ws.checkpoint)
        .output()
        .unwrap();
    assert_eq!(
        reset.status.code(),
        Some(2),
        "reset refuses too: {}",
        stderr(&reset)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // SIGKILL leaves the lock file, but not the lock: the next run proceeds.
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]));
}

#[test]
fn reset_starts_over_and_show_describes_the_checkpoint() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y\n");
    ws.add_file("b.txt", "y\n");
    assert_ok(&ws.run(
        &repo("sql/wordcount.sql"),
        &[
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--no-console",
        ],
    ));
    let show = Command::new(bin())
        .args(["checkpoint", "show", "--checkpoint"])
        .arg(&ws.checkpoint)
        .output()
        .unwrap();
    assert_ok(&show);
    let text = stdout(&show);
    for needle in [
        "wordcount.sql",
        "last batch 1",
        "count(*) AS count",
        "commits/1",
        "state/1.delta",
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
    // A different query is refused until the checkpoint is reset.
    let other = ws.dir.path().join("other.sql");
    std::fs::write(&other, "SELECT count(*) AS n FROM lines").unwrap();
    assert_eq!(
        ws.run(&other, &["--trigger", "once"]).status.code(),
        Some(2)
    );
    let reset = Command::new(bin())
        .args(["reset", "--checkpoint"])
        .arg(&ws.checkpoint)
        .output()
        .unwrap();
    assert_ok(&reset);
    let out = ws.run(&other, &["--trigger", "once"]);
    assert_ok(&out);
    assert_eq!(
        rows(&read_parquet(&ws.output.join("result.parquet"))),
        ["2"],
        "two lines"
    );
}

#[test]
fn verify_reports_differences() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y\n");
    assert_ok(&ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--no-console"],
    ));
    assert_exact(&ws, "fresh");
    // Tamper with the input after the fact (same size: the size taken is what is read): the
    // batch query now differs.
    std::fs::write(ws.input.join("a.txt"), "x z\n").unwrap();
    let out = verify(&ws);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("batch only:  z | 1") && stdout(&out).contains("stream only: y | 1"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn verify_reads_event_times_and_refuses_jobs_it_cannot_check() {
    let event_time = "to_timestamp(substr(value, 1, 20))";
    // Event times put the lines in different 10 s windows than their arrival time would.
    let ws = Workspace::new();
    ws.add_file(
        "a.txt",
        "2026-01-01T00:00:01Z a b\n2026-01-01T00:00:15Z a\nno time\n",
    );
    ws.add_file("b.txt", "2026-01-01T00:00:27Z b\n");
    let tumbling = repo("sql/tumbling_wordcount.sql");
    let run = [
        "--param",
        "size=10s",
        "--event-time",
        event_time,
        "--trigger",
        "once",
    ];
    assert_ok(&ws.run(&tumbling, &[&run[..], &["--no-console"]].concat()));
    let out = verify_query(&ws, "sql/tumbling_wordcount.sql", &["size=10s"]);
    assert_ok(&out);
    assert!(stdout(&out).starts_with("OK"), "{}", stdout(&out));

    // With a watermark, late rows were dropped: no batch query gives the job's result.
    let ws = Workspace::new();
    ws.add_file("a.txt", "2026-01-01T00:00:01Z a\n");
    let with_watermark = [&run[..], &["--watermark", "5s", "--mode", "append"]].concat();
    assert_ok(&ws.run(&tumbling, &with_watermark));
    let out = verify_query(&ws, "sql/tumbling_wordcount.sql", &["size=10s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_logged(&out, "--watermark 5s");

    // Sessions are merged by the engine; plain DataFusion would see one-row sessions.
    let ws = Workspace::new();
    ws.add_file("a.txt", "a\n");
    let sessions = repo("sql/session_wordcount.sql");
    assert_ok(&ws.run(&sessions, &["--param", "gap=10s", "--trigger", "once"]));
    let out = verify_query(&ws, "sql/session_wordcount.sql", &["gap=10s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_logged(&out, "session()");
}

/// 2026-01-01T00:00:00Z in seconds since the epoch: event times in the kill tests count from it.
const BASE_SECS: i64 = 1_767_225_600;

/// The event-time flags of the kill tests: a line starts with its time.
const EVENT_TIME: [&str; 2] = ["--event-time", "to_timestamp(substr(value, 1, 20))"];

/// A file of one to three lines, each `TIME words` with a time `from + 0..jitter` seconds after
/// [`BASE_SECS`] and one to three of five words; returns the text and the lines as the
/// oracle sees them (the words, at their time).
fn timed_lines(rng: &mut StdRng, from: i64, jitter: i64) -> (String, Vec<Line>) {
    let mut text = String::new();
    let mut lines = Vec::new();
    for _ in 0..rng.random_range(1..4) {
        let t = from + rng.random_range(0..jitter);
        let words: Vec<&str> = (0..rng.random_range(1..4))
            .map(|_| ["a", "b", "c", "d", "e"][rng.random_range(0..5)])
            .collect();
        let (day, hour, minute, second) = (1 + t / 86_400, t / 3600 % 24, t / 60 % 60, t % 60);
        let stamp = format!("2026-01-{day:02}T{hour:02}:{minute:02}:{second:02}Z");
        text.push_str(&format!("{stamp} {}\n", words.join(" ")));
        lines.push(Line {
            value: words.join(" "),
            ts_micros: (BASE_SECS + t) * 1_000_000,
            file: String::new(),
        });
    }
    (text, lines)
}

/// Adds files of [`timed_lines`] 4 s apart (`jitter` s out of order), running the job over
/// each and killing it at random up to `max_wait_ms`, until 20 kills; returns every line
/// added, the kills, and how many fell mid-batch.
fn kill_while_adding_timed_files(
    ws: &Workspace,
    query: &Path,
    args: &[&str],
    rng: &mut StdRng,
    jitter: i64,
    max_wait_ms: u64,
) -> (Vec<Line>, usize, usize) {
    let mut lines = Vec::new();
    let (mut kills, mut mid_batch) = (0, 0);
    for i in 0..200 {
        if kills >= 20 {
            break;
        }
        let (text, file_lines) = timed_lines(rng, i * 4, jitter);
        lines.extend(file_lines);
        ws.add_file(&format!("f{i:04}.txt"), &text);
        let run = run_and_kill_at_random(ws, query, args, rng, max_wait_ms);
        kills += usize::from(run.killed());
        mid_batch += usize::from(run.mid_batch());
    }
    (lines, kills, mid_batch)
}

/// The batch oracle's rows for `sql` over `lines`.
fn oracle_rows(sql: &str, lines: &[Line], params: &[(&str, &str)]) -> Vec<String> {
    sorted_rows(&runtime().block_on(batch_query(sql, lines, params, 2)))
}

#[test]
fn sigkill_with_session_windows_keeps_the_result_exact() {
    // Lines carry event times; sessions (10 s gap) of five words grow, merge and bridge across
    // files while the job is killed at random moments, restored from snapshots and deltas.
    let seed = seed() + 2;
    let mut rng = StdRng::seed_from_u64(seed);
    let ws = Workspace::new();
    let query = crate::util::words_after_the_time_file(&ws, "sql/session_wordcount.sql");
    let args: Vec<&str> = every_batch_committed()
        .into_iter()
        .chain(["--param", "gap=10s"])
        .chain(EVENT_TIME)
        .collect();
    let (expected_lines, kills, mid_batch) =
        kill_while_adding_timed_files(&ws, &query, &args, &mut rng, 12, 120);
    assert!(
        kills >= 20 && mid_batch >= 3,
        "{kills} kills, {mid_batch} mid-batch (seed {seed})"
    );
    assert_ok(&ws.run(&query, &args));
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output.join("result.parquet"))),
        oracle_rows(
            crate::oracle::SESSIONS_BY_WINDOW_FUNCTIONS,
            &expected_lines,
            &[("gap", "10s")]
        ),
        "after {kills} SIGKILLs, seed {seed}"
    );
}

/// The windowed queries the append-mode kill tests run: the shipped tumbling and sliding
/// word counts with `--param` flags for windows of `size` seconds (sliding by half).
fn window_queries(size: u32) -> [(&'static str, Vec<String>); 2] {
    [
        ("sql/tumbling_wordcount.sql", vec![format!("size={size}s")]),
        (
            "sql/window_wordcount.sql",
            vec![format!("size={size}s"), format!("slide={}s", size / 2)],
        ),
    ]
}

/// Every row of every append-mode file in the output, sorted; panics if a window's row is
/// in two files (emitted twice).
fn appended_once(ws: &Workspace, context: &str) -> Vec<String> {
    let all = sorted_rows(&read_parquet(&ws.output));
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "a window emitted twice, {context}");
    all
}

#[test]
fn sigkill_in_append_mode_with_a_final_flush_emits_each_window_once() {
    // Event times 4 s a file, at most 3 s out of order: with a 10 s watermark no row is late,
    // so every window closes (by the watermark, or by the final flush) with the batch count.
    let seed = seed() + 11;
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, params) in window_queries(10) {
        let ws = Workspace::new();
        let query = crate::util::words_after_the_time_file(&ws, name);
        let param_flags: Vec<&str> = params.iter().flat_map(|p| ["--param", p]).collect();
        let args: Vec<&str> = every_batch_committed()
            .into_iter()
            .chain(["--watermark", "10s", "--mode", "append"])
            .chain(EVENT_TIME)
            .chain(param_flags.iter().copied())
            .collect();
        let (lines, kills, mid_batch) =
            kill_while_adding_timed_files(&ws, &query, &args, &mut rng, 4, 150);
        // The final flush is killed too, a few times, then runs through.
        let with_flush: Vec<&str> = args.iter().copied().chain(["--final-flush"]).collect();
        let mut flush_kills = 0;
        for _ in 0..5 {
            let run = run_and_kill_at_random(&ws, &query, &with_flush, &mut rng, 150);
            flush_kills += usize::from(run.killed());
        }
        assert_ok(&ws.run(&query, &with_flush));
        let context = format!(
            "{name}: {kills} kills ({mid_batch} mid-batch), {flush_kills} in the final flush, \
             seed {seed}"
        );
        assert!(kills >= 20 && mid_batch >= 3, "{context}");
        let sql = std::fs::read_to_string(repo(name)).unwrap();
        let params: Vec<(&str, &str)> = params.iter().map(|p| p.split_once('=').unwrap()).collect();
        assert_eq!(
            appended_once(&ws, &context),
            oracle_rows(&sql, &lines, &params),
            "{context}"
        );
    }
}

#[test]
fn sigkill_in_append_mode_with_an_idle_timeout_emits_each_window_once() {
    // A running job (trigger every 50 ms) whose input goes quiet between files: after 200 ms
    // idle the watermark advances by wall-clock time and closes windows. Files are an hour
    // apart in event time, so the idle advance never makes a later file's rows late.
    let seed = seed() + 12;
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, params) in window_queries(2) {
        let ws = Workspace::new();
        let query = crate::util::words_after_the_time_file(&ws, name);
        let param_flags: Vec<&str> = params.iter().flat_map(|p| ["--param", p]).collect();
        let args: Vec<&str> = [
            "--trigger",
            "50ms",
            "--idle-timeout",
            "200ms",
            "--checkpoint-interval",
            "0",
            "--watermark",
            "1s",
            "--mode",
            "append",
            "--no-console",
        ]
        .into_iter()
        .chain(EVENT_TIME)
        .chain(param_flags.iter().copied())
        .collect();
        let mut lines = Vec::new();
        let (mut kills, mut mid_batch) = (0, 0);
        for i in 0..20 {
            let (text, file_lines) = timed_lines(&mut rng, i * 3600, 3);
            lines.extend(file_lines);
            ws.add_file(&format!("f{i:04}.txt"), &text);
            // Up to 600 ms with 30 ms steps: some kills land in a batch, some in an idle
            // advance, some after.
            let run = run_and_kill_at_random_with_pauses(&ws, &query, &args, &mut rng, 600, 30);
            assert!(run.killed(), "a running job ended by itself");
            kills += 1;
            mid_batch += usize::from(run.mid_batch());
        }
        // A last run closes the last windows by idling, then stops at SIGTERM.
        let sql = std::fs::read_to_string(repo(name)).unwrap();
        let params: Vec<(&str, &str)> = params.iter().map(|p| p.split_once('=').unwrap()).collect();
        let expected = oracle_rows(&sql, &lines, &params);
        let log_path = ws.dir.path().join("last-run.log");
        let mut child = ws
            .command(&query, &args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        crate::util::wait_for_output(
            &ws.output,
            Duration::from_secs(30),
            |rows| rows.len() >= expected.len(),
            || std::fs::read_to_string(&log_path).unwrap(),
        );
        crate::util::signal(&child, "TERM");
        assert!(child.wait().unwrap().success());
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            log.contains("advancing the watermark by wall-clock time"),
            "{log}"
        );
        let context = format!("{name}: {kills} kills ({mid_batch} mid-batch), seed {seed}");
        assert!(mid_batch >= 2, "{context}");
        assert_eq!(appended_once(&ws, &context), expected, "{context}");
    }
}

#[test]
fn verify_rebuilds_arrival_times_from_snapshots_once_offsets_are_pruned() {
    let ws = Workspace::new();
    for i in 0..6 {
        ws.add_file(&format!("f{i}.txt"), "a b\n");
        std::thread::sleep(Duration::from_millis(5));
    }
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--no-console",
        "--param",
        "size=10s",
        "--snapshot-interval",
        "2",
        "--retain-batches",
        "1",
    ];
    assert_ok(&ws.run(&repo("sql/tumbling_wordcount.sql"), &args));
    assert!(!ws.checkpoint.join("offsets/0").exists(), "pruned");
    let out = verify_query(&ws, "sql/tumbling_wordcount.sql", &["size=10s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("OK"), "{}", stdout(&out));
    // Snapshots as format 1 wrote them (names and modification times only): the arrival
    // times of pruned batches are gone, and verify says so.
    for entry in std::fs::read_dir(ws.checkpoint.join("sources")).unwrap() {
        let path = entry.unwrap().path();
        let names: Vec<String> = (0..6).map(|i| format!("f{i}.txt")).collect();
        let old: Vec<(String, i64)> = names.into_iter().map(|n| (n, 0)).collect();
        write_sealed(&path, &serde_json::to_vec(&old).unwrap());
    }
    let out = verify_query(&ws, "sql/tumbling_wordcount.sql", &["size=10s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_logged(&out, "the query reads `ts`");
}

/// Writes `payload` at `path` with the checksum trailer every checkpoint file carries, as an
/// older dfstream would have written it.
fn write_sealed(path: &Path, payload: &[u8]) {
    let hash = twox_hash::XxHash64::oneshot(0, payload);
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(b"\n#dfstream-xxh64:");
    bytes.extend_from_slice(format!("{hash:016x}:{}\n", payload.len()).as_bytes());
    std::fs::write(path, bytes).unwrap();
}
