//! uplink: the agent on a small box in an ultrasound clinic.
//!
//! The data flows receive → (anonymize) → queue → upload: the ultrasound machine
//! sends exams over DICOM, the box stores them durably in its spool and delivers
//! them to each configured destination. Configuration, events and status sit at
//! the side.

pub mod anonymize;
pub mod backlog;
pub mod clock;
pub mod config;
pub mod events;
pub mod leds;
pub mod logging;
pub mod pipeline;
pub mod provision;
pub mod quarantine;
pub mod queue;
pub mod receive;
pub mod serve;
pub mod service;
pub mod shutdown;
pub mod standard;
pub mod status;
pub mod tls_identity;
pub mod upload;
