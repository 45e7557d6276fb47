//! The one integration-test binary (see STYLE: one binary links DataFusion once).

mod bad_input;
#[cfg(feature = "ballista")]
mod ballista;
mod crash;
mod faults;
mod formats;
mod functions;
mod golden;
mod oracle;
mod postgres;
mod process;
mod progress;
mod restore;
mod s3;
mod socket;
mod tables;
mod tools;
mod ui;
mod util;
