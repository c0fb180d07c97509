//! `bootset`: assign boot images to nodes (see `disklessset` for images).
fn main() {
    eprintln!("bootset: not yet available in this build; see `disklessset --help`");
    std::process::exit(1);
}
