//! The `portcullis` command: the gateway server, the standalone mock
//! upstream, and a thin command-line client of the admin API.

mod audit_cmd;
mod bundle_cmd;
mod cli;
mod client;
mod demo;
mod local_store;
mod orders_cmd;
mod policy_cmd;
mod report_cmd;
mod safeguards_cmd;
mod screening_cmd;
mod serve;
mod settings;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
