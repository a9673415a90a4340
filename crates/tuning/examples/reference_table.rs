//! Prints the reference table in docs/configuration.md (a test checks the docs
//! hold it): `cargo run -p tuning --example reference_table`.

fn main() {
    print!("{}", tuning::recommend::reference_table_markdown());
}
