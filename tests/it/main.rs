//! berth's integration tests, linked as one binary: in-process API tests over the engine
//! (`api`) and end-to-end tests against a real `berth serve` process with real clients (`e2e`),
//! sharing one toolkit (`common`), and a fault-injecting S3 proxy (`faults`).

mod api;
mod common;
mod e2e;
mod faults;
