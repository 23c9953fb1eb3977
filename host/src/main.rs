//! The `fastlane` command.

fn main() -> std::process::ExitCode {
    fastlane_host::cli::main(std::env::args_os())
}
