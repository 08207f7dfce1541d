//! Fulcrum's network protocols: the S3-compatible API (on s3s), DICOMweb
//! (PS3.18) and the HTTP admin port (health, Prometheus metrics).
//! Protocol code only: every byte goes through the engine.

// s3s DTOs have dozens of optional fields; filling the few we set one by
// one after `default()` reads better than giant struct literals.
#![allow(clippy::field_reassign_with_default)]

pub mod admin;
pub mod dicomweb;
pub mod s3;
pub mod server;
pub mod tls;

pub use s3::{Domains, S3Api, S3Credentials};
pub use server::{serve_http, serve_s3, DEFAULT_HEADER_TIMEOUT};
pub use tls::{Incoming, Tls, TlsError};
