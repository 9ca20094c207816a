//! The `netloop` command. Everything it does is in the library; `cli/` turns the
//! command line into calls to it.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
