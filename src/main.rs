//! The `dfstream` binary: parse flags, start logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use dfstream::cli::{CheckpointCommand, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A file-size limit (ulimit -f) should make a write fail with an error we report, not
    // kill the process with SIGXFSZ.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN at start, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // glibc gives each new thread its own malloc arena (up to 8 per core), and memory freed in
    // one stays there: a job whose triggers run on changing threads held 470 -> 590 MB over 4x
    // the input, against a flat 315 MB with two arenas, at the same speed (see README,
    // Performance). MALLOC_ARENA_MAX in the environment still decides, if set.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: a plain setting call at start, before any thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("dfstream=info"))
        .format_timestamp_millis()
        // Log lines go above the backlog bar while one is drawn.
        .target(env_logger::Target::Pipe(Box::new(
            dfstream::progress::LogTarget,
        )))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dfstream: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let config = args.validate()?;
                dfstream::app::run(config, dfstream::app::shutdown_signal())
                    .await
                    .map(|_| true)
            }
            Command::Verify(args) => dfstream::commands::verify(args, &mut stdout).await,
            Command::Checkpoint(CheckpointCommand::Show(args)) => {
                dfstream::commands::show(args, &mut stdout)
                    .await
                    .map(|_| true)
            }
            Command::Checkpoint(CheckpointCommand::SkipBatch(args)) => {
                dfstream::commands::skip_batch(args, &mut stdout)
                    .await
                    .map(|_| true)
            }
            Command::Reset(args) => dfstream::commands::reset_checkpoint(args, &mut stdout)
                .await
                .map(|_| true),
            Command::Generate(command) => {
                dfstream::commands::generate(command, dfstream::app::shutdown_signal())
                    .await
                    .map(|_| true)
            }
            shortcut @ (Command::File { .. } | Command::Window { .. } | Command::Socket { .. }) => {
                let argv = dfstream::commands::shortcut(&shortcut)?;
                let Command::Run(args) = Cli::try_parse_from(argv)
                    .map_err(|e| dfstream::error::Error::Usage(e.to_string()))?
                    .command
                else {
                    unreachable!("a shortcut stands for a run command")
                };
                dfstream::app::run(args.validate()?, dfstream::app::shutdown_signal())
                    .await
                    .map(|_| true)
            }
            Command::Demo(args) => dfstream::commands::demo(args, dfstream::app::shutdown_signal())
                .await
                .map(|_| true),
            Command::Sql(args) => dfstream::commands::sql(args, &mut stdout)
                .await
                .map(|_| true),
            Command::Explain(args) => {
                let config = args.validate()?;
                dfstream::commands::explain(config, &mut stdout)
                    .await
                    .map(|_| true)
            }
            Command::State(args) => dfstream::commands::state(args, &mut stdout)
                .await
                .map(|_| true),
            Command::Cluster(command) => dfstream::commands::cluster(command).await.map(|_| true),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("dfstream: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
