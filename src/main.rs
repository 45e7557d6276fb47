//! The `dfstream` binary: parse flags, start logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use dfstream::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("dfstream=info"))
        .format_timestamp_millis()
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let config = args.validate()?;
                dfstream::app::run(config, dfstream::app::shutdown_signal()).await
            }
        }
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfstream: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
