//! The technician's page: the status snapshot as HTML, for a laptop on the
//! clinic's network (`web.rs` serves it).
//!
//! It says what `uplink status` says — one headline first (all well, offline with
//! a backlog, a person needed), then the LED panel as it is now with its legend,
//! the box's facts and each destination — and nothing a patient could be found
//! by: the snapshot has no patient data, and every value is escaped. It refreshes
//! itself; it has no form and no button, so it can change nothing on the box.

use std::fmt::Write as _;

use crate::device::leds::{LEDS, Panel, Pattern};
use crate::status::{Snapshot, age, human_bytes};

/// Seconds between the page's reloads.
pub const REFRESH_SECS: u32 = 5;

/// The page's one-line verdict, and the colour it is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headline {
    AllWell,
    Offline,
    Attention,
    NotProvisioned,
    NotRunning,
}

impl Headline {
    pub fn of(snapshot: &Snapshot, provisioned: bool) -> Headline {
        if !snapshot.running {
            Headline::NotRunning
        } else if snapshot.needs_a_person() {
            Headline::Attention
        } else if !snapshot.all_ready() {
            Headline::Offline
        } else if !provisioned {
            Headline::NotProvisioned
        } else {
            Headline::AllWell
        }
    }

    /// The banner's CSS class; each has a colour of its own (see `STYLE`).
    fn class(self) -> &'static str {
        match self {
            Headline::AllWell => "well",
            Headline::Offline => "offline",
            Headline::Attention => "attention",
            Headline::NotProvisioned => "unprovisioned",
            Headline::NotRunning => "stopped",
        }
    }
}

/// What the page needs beyond the snapshot.
pub struct Context<'a> {
    pub panel: Panel,
    pub provisioned: bool,
    /// Appended to the page's links (`?token=...`) when the page needs a token.
    pub query: &'a str,
}

/// The whole page.
pub fn render(snapshot: &Snapshot, context: &Context) -> String {
    let headline = Headline::of(snapshot, context.provisioned);
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>uplink {name}</title><style>{STYLE}</style></head><body>\n",
        name = escape(&snapshot.name),
    );
    banner(&mut out, snapshot, headline);
    panel(&mut out, context.panel);
    facts(&mut out, snapshot);
    for d in &snapshot.destinations {
        destination(&mut out, d);
    }
    let _ = write!(
        out,
        "<p class=\"foot\"><a href=\"/audit.log{q}\">Audit trail</a> (download) · \
         <a href=\"/status.json{q}\">status.json</a> · this page reloads every {REFRESH_SECS} s \
         and changes nothing on the box; last status {updated}</p>\n</body></html>\n",
        q = escape(context.query),
        updated = escape(&snapshot.updated),
    );
    out
}

fn banner(out: &mut String, snapshot: &Snapshot, headline: Headline) {
    let pending = snapshot.queue_depth();
    let (title, detail) = match headline {
        Headline::AllWell if pending == 0 => (
            "All well".to_owned(),
            "Every exam received has been delivered.".to_owned(),
        ),
        Headline::AllWell => (
            "All well".to_owned(),
            format!("Uploading: {pending} instance(s) on their way."),
        ),
        Headline::Offline => {
            let down: Vec<String> = snapshot
                .destinations
                .iter()
                .filter(|d| d.activity.state != "ready")
                .map(|d| format!("{} is {}", d.name, d.activity.state))
                .collect();
            (
                "Offline".to_owned(),
                format!(
                    "{}: {pending} instance(s) wait on the card, oldest {}; they go as soon as it is back. Exams are still received.",
                    down.join(", "),
                    age(oldest_pending(snapshot))
                ),
            )
        }
        Headline::Attention => (
            "A person is needed".to_owned(),
            snapshot.attention().join(" · "),
        ),
        Headline::NotProvisioned => (
            "Not provisioned".to_owned(),
            "No destination is configured: write uplink.toml on the card's boot partition."
                .to_owned(),
        ),
        Headline::NotRunning => (
            "The agent is not running".to_owned(),
            format!("This is its last status, from {}.", snapshot.updated),
        ),
    };
    let _ = writeln!(
        out,
        "<div id=\"headline\" class=\"banner {}\"><h1>{}</h1><p>{}</p></div>",
        headline.class(),
        escape(&title),
        escape(&detail)
    );
}

fn oldest_pending(snapshot: &Snapshot) -> Option<u64> {
    snapshot
        .destinations
        .iter()
        .filter_map(|d| d.queue.oldest_pending_secs)
        .max()
}

/// The LEDs as they are now, each with what its patterns mean.
fn panel(out: &mut String, panel: Panel) {
    out.push_str("<h2>LEDs</h2><table class=\"leds\">\n");
    for (led, pattern) in LEDS.iter().zip(panel.0) {
        let legend: Vec<String> = led
            .legend()
            .iter()
            .map(|(p, meaning)| {
                let now = if *p == pattern { " class=\"now\"" } else { "" };
                format!("<li{now}>{}: {}</li>", p.name(), escape(meaning))
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr><td><span id=\"led-{name}\" class=\"led {name} {state}\"></span></td>\
             <td><b>{name}</b><br>{now}</td><td><ul>{legend}</ul></td></tr>",
            name = led.name(),
            state = css_pattern(pattern),
            now = pattern.name(),
            legend = legend.concat(),
        );
    }
    out.push_str("</table>\n");
}

fn css_pattern(pattern: Pattern) -> &'static str {
    match pattern {
        Pattern::Off => "off",
        Pattern::On | Pattern::Flash => "on",
        Pattern::SlowBlink => "slow",
        Pattern::Blink => "blink",
        Pattern::FastBlink => "fast",
    }
}

fn facts(out: &mut String, s: &Snapshot) {
    let c = &s.counters;
    let mut rows = vec![
        ("Box", format!("{} · uplink {}", s.name, s.version)),
        (
            "DICOM",
            format!("port {}, AE title {}", s.listener.port, s.listener.ae_title),
        ),
        (
            "Agent",
            match s.running {
                true => format!("running since {}", s.started),
                false => format!("NOT RUNNING (last status {})", s.updated),
            },
        ),
        (
            "Received",
            format!(
                "{} instance(s), {}; last {}; refused {}; associations now {}, refused {}",
                c.instances_received,
                human_bytes(c.bytes_received),
                c.last_received.as_deref().unwrap_or("never"),
                c.instances_refused,
                c.associations_active,
                c.associations_refused
            ),
        ),
        (
            "Waiting",
            format!(
                "{} instance(s), oldest {}",
                s.queue_depth(),
                age(oldest_pending(s))
            ),
        ),
        ("Storage", s.storage.describe()),
        ("Clock", s.clock.describe().to_owned()),
        (
            "Last error",
            c.last_error
                .as_ref()
                .map_or("none".into(), |e| format!("{} {}", e.at, e.message)),
        ),
    ];
    if let Some(image) = &s.update.image {
        rows.push((
            "System",
            format!(
                "image {image}, root slot {}",
                s.update.slot.as_deref().unwrap_or("?")
            ),
        ));
    }
    let update = match (&s.update.pending, &s.update.last) {
        (Some(pending), _) => Some(format!("{pending} installed, waiting for its first boot")),
        (None, Some(last)) => Some(last.describe()),
        (None, None) => None,
    };
    if let Some(update) = update {
        rows.push(("Update", update));
    }
    if s.commitments.pending > 0 {
        rows.push((
            "Commitment",
            format!(
                "{} storage commitment report(s) pending, oldest {}",
                s.commitments.pending,
                age(s.commitments.oldest_pending_secs)
            ),
        ));
    }
    table(out, "The box", &rows);
}

fn destination(out: &mut String, d: &crate::status::DestinationInfo) {
    let a = &d.activity;
    let mut rows = vec![
        ("Address", d.url.clone()),
        ("Profile", d.profile.clone()),
        (
            "State",
            match &a.next_attempt {
                Some(next) => format!("{}, next attempt {next}", a.state),
                None => a.state.clone(),
            },
        ),
        (
            "Waiting",
            format!(
                "{} instance(s) ({}), oldest {}",
                d.queue.pending,
                human_bytes(d.queue.pending_bytes),
                age(d.queue.oldest_pending_secs)
            ),
        ),
        ("Delivered", a.delivered.to_string()),
        ("Quarantined", d.queue.quarantined.to_string()),
        (
            "Last success",
            a.last_success.clone().unwrap_or_else(|| "never".into()),
        ),
        (
            "Last error",
            a.last_error
                .as_ref()
                .map_or("none".into(), |e| format!("{} {}", e.at, e.message)),
        ),
    ];
    for (reason, n) in &a.discarded {
        rows.push(("Discarded by profile", format!("{n} {reason}")));
    }
    for (reason, n) in &a.not_deliverable {
        rows.push(("Not deliverable", format!("{n}: {reason}")));
    }
    for u in &a.uploading {
        rows.push((
            "Uploading",
            format!(
                "{} instance(s) in the {} lane, {} of {} since {}",
                u.instances,
                u.lane,
                human_bytes(u.sent_bytes),
                human_bytes(u.bytes),
                u.since
            ),
        ));
    }
    table(out, &format!("Destination {}", d.name), &rows);
}

fn table(out: &mut String, title: &str, rows: &[(&str, String)]) {
    let _ = write!(out, "<h2>{}</h2><table class=\"facts\">", escape(title));
    for (key, value) in rows {
        let _ = write!(out, "<tr><th>{key}</th><td>{}</td></tr>", escape(value));
    }
    out.push_str("</table>\n");
}

/// Text as HTML shows it, whatever it holds.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's look: one colour per headline, lit LEDs in colours nothing else
/// on the page uses (the browser test finds them by colour).
const STYLE: &str = "\
body{font-family:DejaVu Sans,Verdana,sans-serif;margin:0 0 2em 0;color:#222;background:#fafafa}\
.banner{padding:14px 24px;color:#fff}.banner h1{margin:0;font-size:28px}.banner p{margin:6px 0 0 0}\
.well{background:#1e7e34}.offline{background:#b26a00}.attention{background:#b71c1c}\
.unprovisioned{background:#1565c0}.stopped{background:#555555}\
h2{margin:18px 24px 6px 24px;font-size:18px}table{margin:0 24px;border-collapse:collapse}\
.facts th{text-align:left;padding:3px 16px 3px 0;vertical-align:top;white-space:nowrap}\
.facts td{padding:3px 0}.leds td{padding:4px 12px 4px 0;vertical-align:top}\
.leds ul{margin:0;padding-left:18px}.leds li.now{font-weight:bold}\
.led{display:inline-block;width:30px;height:30px;border-radius:50%;background:#303030;border:2px solid #111}\
.power.on,.power.slow,.power.blink,.power.fast{background:#00e640}\
.cloud.on,.cloud.blink,.cloud.fast{background:#2f80ff}\
.activity.on{background:#ffd600}\
.attention.on,.attention.fast{background:#ff2d55}\
.slow{animation:blink 2s step-end infinite}.blink{animation:blink .5s step-end infinite}\
.fast{animation:blink .25s step-end infinite}\
@keyframes blink{50%{background:#303030}}\
.foot{margin:18px 24px;color:#555}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::leds;

    fn page(snapshot: &Snapshot, provisioned: bool) -> String {
        render(
            snapshot,
            &Context {
                panel: leds::panel(snapshot, snapshot.counters.instances_received, provisioned),
                provisioned,
                query: "",
            },
        )
    }

    #[test]
    fn the_headline_follows_the_state() {
        let mut s = crate::status::tests::snapshot();
        assert_eq!(Headline::of(&s, true), Headline::Attention);
        let text = page(&s, true);
        assert!(text.contains("class=\"banner attention\""), "{text}");
        assert!(text.contains("are in quarantine"), "{text}");
        assert!(text.contains("class=\"led attention on\""), "{text}");
        assert!(text.contains("uplink-1234abcd.local"), "{text}");

        crate::status::tests::make_well(&mut s);
        s.destinations[0].activity.state = "offline".into();
        assert_eq!(Headline::of(&s, true), Headline::Offline);
        let text = page(&s, true);
        assert!(text.contains("<h1>Offline</h1>"), "{text}");
        assert!(
            text.contains("3 instance(s) wait on the card, oldest 1m 30s"),
            "{text}"
        );
        assert!(text.contains("class=\"led cloud off\""), "{text}");
        assert!(text.contains("class=\"led attention off\""), "{text}");

        s.destinations[0].activity.state = "ready".into();
        s.destinations[0].activity.uploading.clear();
        assert_eq!(Headline::of(&s, true), Headline::AllWell);
        assert!(page(&s, true).contains("class=\"led cloud on\""));
        assert_eq!(Headline::of(&s, false), Headline::NotProvisioned);
        s.running = false;
        assert_eq!(Headline::of(&s, true), Headline::NotRunning);
    }

    #[test]
    fn every_value_is_escaped() {
        let mut s = crate::status::tests::snapshot();
        s.destinations[0].activity.last_error = Some(crate::status::counters::Stamped {
            at: "now".into(),
            message: "<script>alert('x')</script>".into(),
        });
        let text = page(&s, true);
        assert!(!text.contains("<script>"), "{text}");
        assert!(text.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    }
}
