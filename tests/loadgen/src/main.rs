//! Load generator for Pulse ingest (being written).
fn main() {}
