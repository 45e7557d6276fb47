//! The original example's modes as one command each (`file`, `window`, `socket`), and `demo`.

use std::future::Future;

use clap::Parser;

use super::generate::write_continuously;
use crate::cli::{Cli, Command, DemoArgs};
use crate::error::{Error, Result};
use crate::generate::{self, LineMaker, Shape};

/// The `run` flags a mode shortcut stands for, followed by the user's own.
pub fn shortcut(command: &Command) -> Result<Vec<String>> {
    let mut argv: Vec<String> = vec!["dfstream".into(), "run".into()];
    match command {
        Command::File {
            input,
            output,
            run_flags,
        } => {
            argv.push("sql/wordcount.sql".into());
            argv.extend(["--input".into(), input.display().to_string()]);
            argv.extend(["--output".into(), output.display().to_string()]);
            let mut flags = run_flags.as_slice();
            if let Some(secs) = flags.first().and_then(|s| s.parse::<f64>().ok()) {
                flags = &flags[1..];
                default_flag(&mut argv, flags, "--trigger", format!("{secs}s"));
            }
            argv.extend(flags.iter().cloned());
            Ok(argv)
        }
        Command::Window {
            input,
            output,
            size,
            slide,
            run_flags,
        } => {
            argv.push("sql/window_wordcount.sql".into());
            argv.extend(["--input".into(), input.display().to_string()]);
            argv.extend(["--output".into(), output.display().to_string()]);
            argv.extend(["--param".into(), format!("size={size}")]);
            argv.extend(["--param".into(), format!("slide={slide}")]);
            default_flag(&mut argv, run_flags, "--mode", "complete".into());
            argv.extend(run_flags.iter().cloned());
            Ok(argv)
        }
        Command::Socket {
            host,
            port,
            run_flags,
        } => {
            argv.push("sql/wordcount.sql".into());
            argv.extend(["--socket".into(), format!("{host}:{port}")]);
            default_flag(&mut argv, run_flags, "--trigger", "continuous".into());
            argv.extend(run_flags.iter().cloned());
            Ok(argv)
        }
        _ => unreachable!("only mode shortcuts"),
    }
}

/// Adds `flag value` to `argv` unless the user's `run_flags` set that flag themselves.
fn default_flag(argv: &mut Vec<String>, run_flags: &[String], flag: &str, value: String) {
    let given = run_flags
        .iter()
        .any(|f| f == flag || f.starts_with(&format!("{flag}=")));
    if !given {
        argv.extend([flag.to_string(), value]);
    }
}

/// `dfstream demo`: a generator writing into a fresh directory and the job watching it.
pub async fn demo(args: DemoArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    match args.mode.as_str() {
        "file" | "socket" | "window" => {}
        other => {
            return Err(Error::Usage(format!(
                "demo --mode {other}: use file, window or socket"
            )));
        }
    }
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("dfstream-demo-{}", std::process::id())),
    };
    let input = dir.join("input");
    std::fs::create_dir_all(&input)
        .map_err(|e| Error::io(format!("creating {}", input.display()), e))?;
    let seed = crate::time::now_micros() as u64;
    let query = if args.mode == "window" {
        "sql/window_wordcount.sql"
    } else {
        "sql/wordcount.sql"
    };
    let mut argv: Vec<String> = ["dfstream", "run", query, "--num-rows", "10"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if args.mode == "window" {
        // Sliding windows of 10 s every 5 s over arrival time, newest first.
        argv.extend(["--param", "size=10 seconds", "--param", "slide=5 seconds"].map(String::from));
    }
    argv.extend(["--output".into(), dir.join("output").display().to_string()]);
    argv.extend([
        "--checkpoint".into(),
        dir.join("checkpoint").display().to_string(),
    ]);
    let generator = if args.mode == "socket" {
        // The line server on a free port, a few lines a second, and the socket source.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("starting the line server", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let rate = (args.lines as f64 / args.every.as_secs_f64())
            .ceil()
            .max(1.0) as u64;
        eprintln!(
            "dfstream demo: a line server on {addr} sends {rate} lines a second; the job reads them \
             through --socket --trigger continuous; Parquet in {}; Ctrl-C stops",
            dir.join("output").display()
        );
        argv.extend([
            "--socket".into(),
            addr.to_string(),
            "--trigger".into(),
            "continuous".into(),
        ]);
        tokio::spawn(async move {
            generate::serve::serve(listener, Shape::new(seed), rate, std::future::pending()).await
        })
    } else {
        eprintln!(
            "dfstream demo: a file of {} lines every {:?} into {}; counts below; Parquet in {}; \
             Ctrl-C stops",
            args.lines,
            args.every,
            input.display(),
            dir.join("output").display()
        );
        argv.extend(["--input".into(), input.display().to_string()]);
        tokio::spawn(write_continuously(
            input.clone(),
            LineMaker::new(Shape::new(seed)),
            args.lines,
            args.every,
            None,
        ))
    };
    let Command::Run(run_args) = Cli::try_parse_from(argv)
        .map_err(|e| Error::Usage(e.to_string()))?
        .command
    else {
        unreachable!("parsed a run command")
    };
    let result = crate::app::run(run_args.validate()?, shutdown).await;
    generator.abort();
    result.map(|_| ())
}
