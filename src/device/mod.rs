//! The box: what a clinic sees of it (LEDs), what it depends on (the clock, with no
//! RTC on a Pi), how it is set up (the card's `uplink.toml` at boot), and how it
//! runs (systemd notify and watchdog).

pub mod clock;
pub mod health;
pub mod leds;
pub mod provision;
pub mod systemd;
pub mod update;
