//! The `dohost` command: serve an object class over HTTP, and tools around it.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
