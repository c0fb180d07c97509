//! `disklessset`: the full-screen menu by default, every action also a subcommand.
mod args;
mod cli;
mod output;
mod tui;

fn main() {
    std::process::exit(cli::main());
}
