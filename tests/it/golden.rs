//! Golden SQL cases: `tests/sql/NAME.sql` holds the input (as comments), trigger boundaries,
//! extra flags and the query; `tests/sql/NAME.out` holds the console output per trigger.
//!
//! In a case file, `-- | text` adds a line to the current trigger's input file, `-- trigger`
//! starts the next trigger's file, and `-- args: ...` adds flags. Each trigger is one file,
//! run with `--trigger available-now --max-files-per-trigger 1`. Rows of each printed table
//! are sorted (results without ORDER BY have no order) unless the case has `-- ordered`.
//! Every case runs twice: straight through, and stopped and restarted after each trigger;
//! both must print the expected output. A case marked `-- refused` must be refused at start
//! (exit 2, nothing printed on stdout, no input taken); its `.out` holds the message. `DFSTREAM_BLESS=1 cargo test golden` rewrites the
//! `.out` files for review.

use std::path::{Path, PathBuf};

use crate::util::{Workspace, assert_ok, repo, stderr, stdout};

struct Case {
    sql_path: PathBuf,
    triggers: Vec<String>,
    args: Vec<String>,
    ordered: bool,
    refused: bool,
}

fn parse(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    let mut triggers = vec![String::new()];
    let mut args = Vec::new();
    let mut ordered = false;
    let mut refused = false;
    for line in text.lines() {
        if let Some(input) = line.strip_prefix("-- |") {
            let input = input.strip_prefix(' ').unwrap_or(input);
            let current = triggers.last_mut().unwrap();
            current.push_str(input);
            current.push('\n');
        } else if line.trim() == "-- trigger" {
            triggers.push(String::new());
        } else if let Some(a) = line.strip_prefix("-- args:") {
            args.extend(a.split_whitespace().map(str::to_string));
        } else if line.trim() == "-- ordered" {
            ordered = true;
        } else if line.trim() == "-- refused" {
            refused = true;
        }
    }
    Case {
        sql_path: path.to_path_buf(),
        triggers,
        args,
        ordered,
        refused,
    }
}

/// Sorts the data rows of each boxed table in `console`.
fn normalize(console: &str) -> String {
    let mut out = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    let mut borders = 0;
    for line in console.lines() {
        if line.starts_with('+') {
            borders += 1;
            if borders % 3 == 0 {
                rows.sort();
                out.append(&mut rows);
            }
            out.push(line);
        } else if line.starts_with('|') && borders % 3 == 2 {
            rows.push(line);
        } else {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

/// The message of a case that must be refused, with the case's path as `NAME.sql`.
fn refusal(case: &Case) -> String {
    let ws = Workspace::new();
    for (i, input) in case.triggers.iter().enumerate() {
        ws.add_file(&format!("{i:03}.txt"), input);
    }
    let mut args: Vec<&str> = vec!["--trigger", "available-now"];
    args.extend(case.args.iter().map(String::as_str));
    let out = ws.run(&case.sql_path, &args);
    let name = case.sql_path.file_name().unwrap().to_string_lossy();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: expected a refusal, got {:?}\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{name}: {}", stdout(&out));
    assert!(
        ws.commits().is_empty(),
        "{name}: a refused query committed a batch"
    );
    stderr(&out).replace(&case.sql_path.display().to_string(), &name)
}

fn run_case(case: &Case, restart_each_trigger: bool) -> String {
    let ws = Workspace::new();
    let mut args: Vec<&str> = vec!["--trigger", "available-now", "--max-files-per-trigger", "1"];
    args.extend(case.args.iter().map(String::as_str));
    let mut console = String::new();
    for (i, input) in case.triggers.iter().enumerate() {
        ws.add_file(&format!("{i:03}.txt"), input);
        // Distinct modification times keep the files in trigger order.
        std::thread::sleep(std::time::Duration::from_millis(5));
        if restart_each_trigger {
            let out = ws.run(&case.sql_path, &args);
            assert_ok(&out);
            console.push_str(&stdout(&out));
        }
    }
    if !restart_each_trigger {
        let out = ws.run(&case.sql_path, &args);
        assert_ok(&out);
        console.push_str(&stdout(&out));
    }
    if case.ordered {
        console
    } else {
        normalize(&console)
    }
}

#[test]
fn golden_sql_cases() {
    let dir = repo("tests/sql");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    let bless = std::env::var_os("DFSTREAM_BLESS").is_some();
    let mut failures = Vec::new();
    for path in &paths {
        let case = parse(path);
        let expected_path = path.with_extension("out");
        // The first run's output is blessed; every run must give the expected output.
        let runs: Vec<(&str, String)> = if case.refused {
            vec![("refusal", refusal(&case))]
        } else {
            vec![
                ("straight run", run_case(&case, false)),
                (
                    "run with a restart after each trigger",
                    run_case(&case, true),
                ),
            ]
        };
        if bless {
            std::fs::write(&expected_path, &runs[0].1).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        for (what, got) in runs {
            if got != expected {
                failures.push(format!(
                    "{}: {what} differs\n--- expected\n{expected}\n--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
