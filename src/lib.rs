//! uplink: the agent on a small box in an ultrasound clinic.
//!
//! The data flows receive → (anonymize) → queue → upload: the ultrasound machine
//! sends exams over DICOM, the box stores them durably in its spool and delivers
//! them to each configured destination. Configuration, events and status sit at
//! the side.

pub mod anonymize;
pub mod audit;
pub mod backlog;
pub mod config;
pub mod control;
pub mod device;
pub mod heartbeat;
pub mod logging;
pub mod pipeline;
pub mod queue;
pub mod receive;
pub mod serve;
pub mod shutdown;
pub mod standard;
pub mod status;
pub mod tls_identity;
pub mod update_fetch;
pub mod upload;
pub mod web;
