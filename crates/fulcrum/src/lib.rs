//! The `fulcrum` package's library half: the configuration (TOML file,
//! merged settings), shared by the binary and the fuzz targets (`fuzz/`).

pub mod config;
