//! The LED panel: the box's state for people who cannot log in.
//!
//! The panel is derived from the same snapshot `uplink status` reports, so the two
//! never disagree. A state machine turns the snapshot into a pattern per LED, and
//! a ticker turns patterns into on/off, driving whatever [`Lights`] there are: GPIO
//! pins through rppal (Raspberry Pi OS, whose kernel has `/dev/gpiomem`) or the
//! Linux GPIO character device (mainline and Debian kernels, which do not), or a
//! simulated panel on the terminal (`uplink serve --led-sim`).
//!
//! | LED | pattern | meaning |
//! |---|---|---|
//! | power | slow blink | alive (a stuck LED means the agent hangs) |
//! | cloud | on / blink / fast blink / off | destinations reachable / uploading / uploading a backlog of 100 or more / a destination offline |
//! | activity | flash | an instance was received |
//! | attention | on / fast blink / off | a person is needed (credentials refused, destination misconfigured, instances in quarantine or not deliverable, a damaged spool file set aside, a backlog for a destination no longer configured, storage full, the SD card's uplink.toml refused, clock wrong) / not provisioned (no destination configured) / all well |

use std::io;

use crate::config::{LedBackend, Leds};
use crate::status::Snapshot;

/// The four LEDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Led {
    Power,
    Cloud,
    Activity,
    Attention,
}

pub const LEDS: [Led; 4] = [Led::Power, Led::Cloud, Led::Activity, Led::Attention];

/// What an LED does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Off,
    On,
    /// 1 s on, 1 s off.
    SlowBlink,
    /// 250 ms on, 250 ms off.
    Blink,
    /// 125 ms on, 125 ms off.
    FastBlink,
    /// On for one tick.
    Flash,
}

impl Led {
    pub fn name(self) -> &'static str {
        match self {
            Led::Power => "power",
            Led::Cloud => "cloud",
            Led::Activity => "activity",
            Led::Attention => "attention",
        }
    }

    /// What each of its patterns means, for people reading the panel (the page,
    /// the README's table).
    pub fn legend(self) -> &'static [(Pattern, &'static str)] {
        match self {
            Led::Power => &[(
                Pattern::SlowBlink,
                "the agent is alive (lit or dark without blinking: it hangs)",
            )],
            Led::Cloud => &[
                (Pattern::On, "every destination is reachable"),
                (Pattern::Blink, "uploading"),
                (Pattern::FastBlink, "uploading a backlog of 100 or more"),
                (
                    Pattern::Off,
                    "a destination is offline: exams wait on the card",
                ),
            ],
            Led::Activity => &[(Pattern::Flash, "an exam's image was received")],
            Led::Attention => &[
                (Pattern::On, "a person is needed: the page says why"),
                (
                    Pattern::FastBlink,
                    "not provisioned: no destination in uplink.toml",
                ),
                (Pattern::Off, "all well"),
            ],
        }
    }
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Off => "off",
            Pattern::On => "on",
            Pattern::SlowBlink => "slow blink",
            Pattern::Blink => "blink",
            Pattern::FastBlink => "fast blink",
            Pattern::Flash => "flash",
        }
    }
}

/// Backlog from which the cloud LED blinks fast.
const BACKLOG: u64 = 100;

/// The pattern of each LED, in [`LEDS`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panel(pub [Pattern; 4]);

/// What the panel shows for a snapshot; `received_before` is the received count at
/// the previous tick (a change flashes the activity LED); `provisioned` is false
/// when the agent runs on built-in defaults.
pub fn panel(snapshot: &Snapshot, received_before: u64, provisioned: bool) -> Panel {
    let destinations = &snapshot.destinations;
    let uploading = destinations
        .iter()
        .any(|d| !d.activity.uploading.is_empty());
    let cloud = if !snapshot.all_ready() {
        Pattern::Off
    } else if uploading && snapshot.queue_depth() >= BACKLOG {
        Pattern::FastBlink
    } else if uploading {
        Pattern::Blink
    } else {
        Pattern::On
    };
    let activity = if snapshot.counters.instances_received > received_before {
        Pattern::Flash
    } else {
        Pattern::Off
    };
    let attention = if snapshot.needs_a_person() {
        Pattern::On
    } else if !provisioned {
        Pattern::FastBlink
    } else {
        Pattern::Off
    };
    Panel([Pattern::SlowBlink, cloud, activity, attention])
}

/// Whether an LED with `pattern` is lit at tick `tick` (8 ticks a second).
pub fn lit(pattern: Pattern, tick: u64) -> bool {
    match pattern {
        Pattern::Off => false,
        Pattern::On | Pattern::Flash => true,
        Pattern::SlowBlink => tick % 16 < 8,
        Pattern::Blink => tick % 4 < 2,
        Pattern::FastBlink => tick % 2 == 0,
    }
}

/// Something that lights LEDs.
pub trait Lights: Send {
    fn set(&mut self, led: Led, on: bool) -> io::Result<()>;
}

/// The simulated panel: one terminal line whenever an LED changes.
#[derive(Default)]
pub struct Terminal {
    state: [bool; 4],
}

impl Lights for Terminal {
    fn set(&mut self, led: Led, on: bool) -> io::Result<()> {
        let i = LEDS.iter().position(|l| *l == led).expect("known LED");
        if self.state[i] != on {
            self.state[i] = on;
            let dot = |on: bool| if on { '●' } else { '○' };
            let [p, c, a, t] = self.state;
            println!(
                "LEDs  power {}  cloud {}  activity {}  attention {}",
                dot(p),
                dot(c),
                dot(a),
                dot(t)
            );
        }
        Ok(())
    }
}

/// The lights for the configuration: the simulated panel if asked for, else GPIO.
/// Without usable GPIO (a PC, a missing device), says so once and returns none:
/// the agent runs on, its state in `status` and the log.
pub fn open(config: &Leds, simulated: bool) -> Option<Box<dyn Lights>> {
    if simulated {
        return Some(Box::new(Terminal::default()));
    }
    let pins = [
        config.power,
        config.cloud,
        config.activity,
        config.attention,
    ];
    let result = match config.backend {
        LedBackend::None => return None,
        LedBackend::Rppal => Rppal::open(pins).map(|l| Box::new(l) as Box<dyn Lights>),
        LedBackend::Gpiocdev => {
            Cdev::open(&config.chip, pins).map(|l| Box::new(l) as Box<dyn Lights>)
        }
        LedBackend::Auto => Rppal::open(pins)
            .map(|l| Box::new(l) as Box<dyn Lights>)
            .or_else(|rppal| {
                Cdev::open(&config.chip, pins)
                    .map(|l| Box::new(l) as Box<dyn Lights>)
                    .map_err(|cdev| format!("{rppal}; {cdev}"))
            }),
    };
    match result {
        Ok(lights) => Some(lights),
        Err(e) => {
            log::warn!(
                "no LED panel: {e}; state is in `uplink status` and this log ([leds] backend = \"none\" silences this)"
            );
            None
        }
    }
}

/// GPIO through rppal's memory-mapped access (Raspberry Pi OS).
struct Rppal([rppal::gpio::OutputPin; 4]);

impl Rppal {
    fn open(pins: [u8; 4]) -> Result<Rppal, String> {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| format!("rppal: {e}"))?;
        let mut out = Vec::with_capacity(4);
        for pin in pins {
            out.push(
                gpio.get(pin)
                    .map_err(|e| format!("rppal: GPIO {pin}: {e}"))?
                    .into_output_low(),
            );
        }
        Ok(Rppal(
            out.try_into().unwrap_or_else(|_| unreachable!("four pins")),
        ))
    }
}

impl Lights for Rppal {
    fn set(&mut self, led: Led, on: bool) -> io::Result<()> {
        let pin = &mut self.0[LEDS.iter().position(|l| *l == led).expect("known LED")];
        if on {
            pin.set_high()
        } else {
            pin.set_low()
        }
        Ok(())
    }
}

/// GPIO through the Linux character device (`/dev/gpiochipN`).
struct Cdev {
    request: gpiocdev::Request,
    lines: [u32; 4],
}

impl Cdev {
    fn open(chip: &std::path::Path, pins: [u8; 4]) -> Result<Cdev, String> {
        let lines = pins.map(u32::from);
        let request = gpiocdev::Request::builder()
            .on_chip(chip)
            .with_consumer("uplink")
            .with_lines(&lines)
            .as_output(gpiocdev::line::Value::Inactive)
            .request()
            .map_err(|e| format!("{}: {e}", chip.display()))?;
        Ok(Cdev { request, lines })
    }
}

impl Lights for Cdev {
    fn set(&mut self, led: Led, on: bool) -> io::Result<()> {
        let line = self.lines[LEDS.iter().position(|l| *l == led).expect("known LED")];
        let value = if on {
            gpiocdev::line::Value::Active
        } else {
            gpiocdev::line::Value::Inactive
        };
        self.request
            .set_value(line, value)
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::clock::Clock;
    use crate::device::update::{Outcome, Verdict};
    use crate::queue::DestinationStats;
    use crate::status::counters::{Counters, DestinationCounters, Stamped, Uploading};
    use crate::status::{DestinationInfo, ListenerInfo};

    fn snapshot(state: &str, pending: u64, uploading: bool, quarantined: u64) -> Snapshot {
        Snapshot {
            version: "0".into(),
            name: String::new(),
            pid: 1,
            started: String::new(),
            updated: String::new(),
            running: true,
            listener: ListenerInfo {
                port: 11112,
                ae_title: "UPLINK".into(),
            },
            counters: Counters {
                instances_received: 5,
                ..Counters::default()
            },
            destinations: vec![DestinationInfo {
                name: "cloud".into(),
                url: "https://x".into(),
                profile: "strict".into(),
                queue: DestinationStats {
                    pending,
                    pending_bytes: 0,
                    oldest_pending_secs: None,
                    quarantined,
                },
                activity: DestinationCounters {
                    state: state.into(),
                    uploading: if uploading {
                        vec![Uploading {
                            lane: "small".into(),
                            instances: 1,
                            bytes: 1,
                            sent_bytes: 0,
                            since: String::new(),
                        }]
                    } else {
                        vec![]
                    },
                    ..DestinationCounters::default()
                },
            }],
            clock: Clock::Synchronized,
            provisioning: None,
            damaged: Default::default(),
            orphaned: Default::default(),
            update: Default::default(),
            commitments: Default::default(),
            storage: Default::default(),
        }
    }

    #[test]
    fn every_state_shows_as_the_legend_says() {
        use Pattern::*;
        // Idle and reachable: power alive, cloud on, nothing else.
        assert_eq!(
            panel(&snapshot("ready", 0, false, 0), 5, true),
            Panel([SlowBlink, On, Off, Off])
        );
        // An instance arrived since the last tick.
        assert_eq!(panel(&snapshot("ready", 0, false, 0), 4, true).0[2], Flash);
        // Uploading, and uploading a backlog.
        assert_eq!(panel(&snapshot("ready", 3, true, 0), 5, true).0[1], Blink);
        assert_eq!(
            panel(&snapshot("ready", 150, true, 0), 5, true).0[1],
            FastBlink
        );
        // Offline.
        assert_eq!(panel(&snapshot("offline", 3, false, 0), 5, true).0[1], Off);
        // A person is needed.
        assert_eq!(
            panel(&snapshot("authentication refused", 3, false, 0), 5, true).0[3],
            On
        );
        assert_eq!(
            panel(&snapshot("misconfigured", 0, false, 0), 5, true).0[3],
            On
        );
        assert_eq!(panel(&snapshot("ready", 0, false, 1), 5, true).0[3], On);
        let mut full = snapshot("ready", 0, false, 0);
        full.counters.last_error = Some(Stamped {
            at: String::new(),
            message: "C-STORE refused (A700H): storage full".into(),
        });
        assert_eq!(panel(&full, 5, true).0[3], On);
        let mut stale = snapshot("ready", 0, false, 0);
        stale.clock = Clock::Wrong;
        assert_eq!(panel(&stale, 5, true).0[3], On);
        stale.clock = Clock::Unsynchronized;
        assert_eq!(panel(&stale, 5, true).0[3], Off);
        let mut withheld = snapshot("ready", 0, false, 0);
        withheld.destinations[0]
            .activity
            .not_deliverable
            .insert("burned-in text".into(), 1);
        assert_eq!(panel(&withheld, 5, true).0[3], On);
        let mut orphaned = snapshot("ready", 0, false, 0);
        orphaned.orphaned.insert("old-cloud".into(), 2);
        assert_eq!(panel(&orphaned, 5, true).0[3], On);
        let mut damaged = snapshot("ready", 0, false, 0);
        damaged.damaged.files = 1;
        assert_eq!(panel(&damaged, 5, true).0[3], On);
        let mut refused = snapshot("ready", 0, false, 0);
        refused.provisioning = Some("the configuration on the SD card was refused".into());
        assert_eq!(panel(&refused, 5, true).0[3], On);
        let outcome = |verdict| Some(Outcome::now(verdict, Some("2".into()), Some("why".into())));
        let mut rolled_back = snapshot("ready", 0, false, 0);
        rolled_back.update.last = outcome(Verdict::RolledBack);
        assert_eq!(panel(&rolled_back, 5, true).0[3], On);
        let mut bad_bundle = snapshot("ready", 0, false, 0);
        bad_bundle.update.last = outcome(Verdict::Refused);
        assert_eq!(panel(&bad_bundle, 5, true).0[3], On);
        let mut updated = snapshot("ready", 0, false, 0);
        updated.update.last = outcome(Verdict::Updated);
        assert_eq!(panel(&updated, 5, true).0[3], Off);
        // Not provisioned.
        assert_eq!(
            panel(&snapshot("ready", 0, false, 0), 5, false).0[3],
            FastBlink
        );
    }

    #[test]
    fn without_gpio_the_panel_is_absent_not_fatal() {
        let config = Leds {
            chip: "/dev/no-such-gpiochip".into(),
            ..Leds::default()
        };
        // This machine is no Raspberry Pi and has no such chip.
        assert!(open(&config, false).is_none());
        assert!(
            open(
                &Leds {
                    backend: LedBackend::None,
                    ..config.clone()
                },
                false
            )
            .is_none()
        );
        assert!(
            open(&config, true).is_some(),
            "the simulated panel always works"
        );
        let error = Cdev::open(&config.chip, [17, 27, 22, 23])
            .err()
            .expect("no such chip");
        assert!(error.contains("/dev/no-such-gpiochip"), "{error}");
    }

    #[test]
    fn patterns_blink_at_their_rates() {
        let count = |p| (0..16).filter(|t| lit(p, *t)).count();
        assert_eq!(count(Pattern::Off), 0);
        assert_eq!(count(Pattern::On), 16);
        assert_eq!(count(Pattern::SlowBlink), 8);
        assert_eq!(count(Pattern::Blink), 8);
        assert_eq!(count(Pattern::FastBlink), 8);
        assert!(lit(Pattern::SlowBlink, 0) && !lit(Pattern::SlowBlink, 8));
        assert!(lit(Pattern::Blink, 1) && !lit(Pattern::Blink, 2));
        assert!(lit(Pattern::FastBlink, 0) && !lit(Pattern::FastBlink, 1));
    }
}
