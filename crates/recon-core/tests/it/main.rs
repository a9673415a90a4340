//! recon-core's integration tests: one binary, one module per area.

mod encoding;
mod input;
mod matcher;
mod roles;
mod rules_file;
mod truth;
mod typed_columns;
