//! The run as a picture: an SVG bar chart of requests/s against the
//! ceiling, and of webhook deliveries/s, written beside the Markdown table.
//! Plain text out, so no plotting library is needed.

use std::fmt::Write;

use crate::report::Run;

const WIDTH: f64 = 860.0;
const LABEL: f64 = 250.0;
const BAR_AREA: f64 = 380.0;
const ROW: f64 = 26.0;
const BAR: f64 = 16.0;

/// One bar: its label, its value, and the text written after it.
struct Bar {
    label: String,
    value: f64,
    note: String,
    /// The ceiling is drawn apart from the scenarios.
    reference: bool,
}

pub fn svg(run: &Run) -> String {
    let ceiling = run.ceiling_rate();
    let mut requests = vec![Bar {
        label: run.ceiling.name.clone(),
        value: ceiling,
        note: format!(
            "{:.0}/s, p99 {:.2} ms",
            ceiling,
            run.ceiling.outcome.latencies.quantile_ms(0.99)
        ),
        reference: true,
    }];
    for row in &run.rows {
        let per_second = row.outcome.per_second();
        requests.push(Bar {
            label: row.name.clone(),
            value: per_second,
            note: format!(
                "{:.0}/s, {:.2}× ceiling, p99 {:.2} ms",
                per_second,
                run.ratio_of(row),
                row.outcome.latencies.quantile_ms(0.99)
            ),
            reference: false,
        });
    }
    let deliveries: Vec<Bar> = run
        .webhooks
        .iter()
        .map(|row| {
            let d = &row.delivery;
            Bar {
                label: format!(
                    "webhooks, {} endpoint{}",
                    d.endpoints,
                    if d.endpoints == 1 { "" } else { "s" }
                ),
                value: d.per_second(),
                note: format!(
                    "{:.0} delivered/s ({}), p50 {:.2} ms",
                    d.per_second(),
                    d.offered
                        .map_or("as fast as possible".to_owned(), |rate| format!(
                            "{rate:.0}/s offered"
                        )),
                    d.latencies.quantile_ms(0.5)
                ),
                reference: false,
            }
        })
        .collect();

    let height = 90.0
        + ROW * requests.len() as f64
        + if deliveries.is_empty() {
            0.0
        } else {
            50.0 + ROW * deliveries.len() as f64
        }
        + 30.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">endusers: requests/s against the machine's own ceiling</text>"#
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="42" fill="#555555">{}</text>"##,
        escape(&run.subtitle())
    );

    let mut y = 62.0;
    let _ = writeln!(
        out,
        r#"<text x="10" y="{y}" font-weight="bold">HTTP, {} connections</text>"#,
        run.params.connections
    );
    y += 10.0;
    let top = y;
    bars(&mut out, &requests, ceiling, &mut y);
    // The GET target: 0.6 × the ceiling.
    let x = LABEL + BAR_AREA * 0.6;
    let _ = writeln!(
        out,
        r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{y}" stroke="#cc3333" stroke-dasharray="4 3"/><text x="{x}" y="{}" fill="#cc3333" font-size="10" text-anchor="middle">0.6 × ceiling</text>"##,
        y + 12.0
    );

    if !deliveries.is_empty() {
        y += 38.0;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{y}" font-weight="bold">Webhook deliveries/s to a local receiver</text>"#
        );
        y += 10.0;
        let scale = deliveries
            .iter()
            .map(|bar| bar.value)
            .fold(20_000.0_f64, f64::max);
        bars(&mut out, &deliveries, scale, &mut y);
        for (target, label) in [(10_000.0, "10,000/s"), (20_000.0, "20,000/s")] {
            let x = LABEL + BAR_AREA * target / scale;
            let _ = writeln!(
                out,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{y}" stroke="#cc3333" stroke-dasharray="4 3"/><text x="{x}" y="{}" fill="#cc3333" font-size="10" text-anchor="middle">{label}</text>"##,
                y - ROW * deliveries.len() as f64,
                y + 12.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Draws `bars` from `y` down, each scaled so `scale` fills the bar area.
fn bars(out: &mut String, bars: &[Bar], scale: f64, y: &mut f64) {
    for bar in bars {
        let length = if scale > 0.0 {
            (bar.value / scale).clamp(0.0, 1.0) * BAR_AREA
        } else {
            0.0
        };
        let colour = if bar.reference { "#999999" } else { "#3a6ea5" };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{LABEL}" y="{}" width="{length:.1}" height="{BAR}" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            LABEL - 8.0,
            *y + BAR - 4.0,
            escape(&bar.label),
            *y,
            LABEL + length + 6.0,
            *y + BAR - 4.0,
            escape(&bar.note),
        );
        *y += ROW;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
