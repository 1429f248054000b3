//! The one binary: CLI, manager and worker. `main` only starts things.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
