//! The report as one self-contained HTML file: inline CSS, charts as
//! inline SVG (drawn by `charts-rs`), no scripts, readable offline and
//! printable to PDF from a browser; in Danish or English.

use std::fmt::Write as _;

use charts_rs::{HorizontalBarChart, Series};

use super::figures::{LEVELS, TACTICS};
use super::{Lang, Report, ReportError, Row, Shown};

/// The words of the report in one language.
fn t(lang: Lang, key: &str) -> &'static str {
    let (da, en) = match key {
        "title" => ("Cybervejrudsigt", "Cyber weather forecast"),
        "sector" => ("sektorudgave", "sector edition"),
        "edition_of" => ("udgave for", "edition for"),
        "period" => ("Periode", "Period"),
        "previous" => ("forrige periode", "previous period"),
        "summary" => ("Sammenfatning", "Summary"),
        "summary_lead" => (
            "Trusselsniveau pr. kritisk proces på den femtrinsskala Center for Cybersikkerhed bruger, udledt af periodens detektioner (se Metode).",
            "Threat level per critical process on the five-step scale the national centre for cyber security uses, derived from the period's detections (see Method).",
        ),
        "category" => ("Kategori", "Category"),
        "now" => ("Nu", "Now"),
        "before" => ("Før", "Before"),
        "change" => ("Ændring", "Change"),
        "overall" => ("Samlet", "Overall"),
        "detections" => ("Detektioner", "Detections"),
        "incidents" => ("Hændelser", "Incidents"),
        "near_misses" => ("Nærved-hændelser", "Near-misses"),
        "attack" => ("Detektioner efter ATT&CK", "Detections by ATT&CK"),
        "tactic" => ("Taktik", "Tactic"),
        "techniques" => ("Teknikker (antal)", "Techniques (count)"),
        "by_process" => ("Efter kritisk proces", "By critical process"),
        "process" => ("Proces", "Process"),
        "by_kind" => ("Efter type organisation", "By kind of organisation"),
        "kind" => ("Type", "Kind"),
        "top_rules" => ("Hyppigste regler", "Top rules"),
        "rule" => ("Regel", "Rule"),
        "incidents_title" => ("Hændelser og nærved-hændelser", "Incidents and near-misses"),
        "incidents_def" => (
            "En hændelse er en detektion med alvorlighed høj eller kritisk, hvor en kritisk proces er i fare. En nærved-hændelse er enhver anden detektion, hvor en kritisk proces er i fare.",
            "An incident is a detection of severity high or critical with a critical process at risk. A near-miss is any other detection with a critical process at risk.",
        ),
        "ttd" => ("Tid til detektion", "Time to detect"),
        "ttd_lead" => (
            "Fra den første hændelse bag en alarm til alarmen; alarmer fundet senere ved retro-jagt tælles ikke med.",
            "From the first event behind an alert to the alert; alerts found later by retro-hunts are not counted.",
        ),
        "median" => ("Median", "Median"),
        "p95" => ("95. percentil", "95th percentile"),
        "coverage" => ("Dækning", "Coverage"),
        "coverage_none" => (
            "Dækning kræver arkivet (--archive); afsnittet er udeladt.",
            "Coverage needs the archive (--archive); this section is left out.",
        ),
        "coverage_lead" => (
            "Logs modtaget i arkivet. Kilder (organisation og input), der sendte før, men ikke nu, er tavse.",
            "Logs received in the archive. Sources (organisation and input) that sent before but not now have fallen silent.",
        ),
        "organisations_sending" => ("Organisationer, der sendte logs", "Organisations that sent logs"),
        "source" => ("Kilde", "Source"),
        "silent" => ("Tavse kilder", "Silent sources"),
        "none" => ("Ingen", "None"),
        "warnings" => ("Advarsler sendt pr. TLP", "Warnings sent per TLP"),
        "own" => ("Egen organisation", "Own organisation"),
        "method" => ("Metode og mærkning", "Method and marking"),
        "hidden" => (
            "– : færre end tre organisationer; tallet vises ikke i sektorudgaven.",
            "– : fewer than three organisations; the figure is not shown in the sector edition.",
        ),
        "method_levels" => (
            "Trusselsniveau: meget høj ved hændelser hos tre eller flere organisationer; høj ved en hændelse; middel ved nærved-hændelser hos to eller flere organisationer eller tre eller flere; lav ved en nærved-hændelse eller anden detektion; ingen uden detektioner.",
            "Threat level: very high for incidents at three or more organisations; high for an incident; medium for near-misses at two or more organisations, or three or more; low for a near-miss or any detection; none without detections.",
        ),
        "method_tlp" => (
            "Rapporten indeholder kun alarmer op til og med sin egen TLP; sektorens tal tæller aldrig over TLP:GREEN. Tal, som færre end tre organisationer står bag, vises ikke; små grupper slås sammen.",
            "The report holds only alerts at or below its own TLP; the sector's figures never count above TLP:GREEN. A figure fewer than three organisations make up is not shown; small groups are merged.",
        ),
        "above" => ("alarmer over rapportens TLP er udeladt", "alerts above the report's TLP are left out"),
        "organisations_alerting" => ("Organisationer med detektioner", "Organisations with detections"),
        "region" => ("Region", "Region"),
        "hospital" => ("Hospital", "Hospital"),
        "municipality" => ("Kommune", "Municipality"),
        "gp_clinic" => ("Lægepraksis", "GP clinic"),
        "supplier" => ("Leverandør", "Supplier"),
        "unknown" => ("Ukendt", "Unknown"),
        _ => ("?", "?"),
    };
    match lang {
        Lang::Da => da,
        Lang::En => en,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cell(shown: Shown) -> String {
    shown.0.map_or_else(|| "–".to_string(), |n| n.to_string())
}

fn arrow(now: Shown, before: Shown) -> &'static str {
    match (now.0, before.0) {
        (Some(a), Some(b)) if a > b => "↑",
        (Some(a), Some(b)) if a < b => "↓",
        (Some(_), Some(_)) => "→",
        _ => "",
    }
}

const STYLE: &str = "
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2em auto;max-width:60em;color:#1b1b1b;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #1b3a57;padding-bottom:.2em;margin-top:2em;break-after:avoid}
table{border-collapse:collapse;margin:.5em 0;break-inside:avoid}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef2f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.tlp{display:inline-block;padding:.2em .8em;font-weight:bold;background:#000;font-family:monospace}
.tlp-clear{color:#fff}.tlp-green{color:#33ff00}.tlp-amber,.tlp-amber-strict{color:#ffc000}.tlp-red{color:#ff2b2b}
.lvl{display:inline-block;padding:.1em .6em;border-radius:.3em;color:#fff}
.l0{background:#4a7a4a}.l1{background:#8aa63c}.l2{background:#d9a400;color:#111}.l3{background:#d9661f}.l4{background:#b3122e}
.heat td{font-size:.85em}.note{color:#555;font-size:.9em}
svg{max-width:100%;height:auto}
@media print{body{margin:0;max-width:none}h2{break-before:auto}}
";

/// The report as HTML.
///
/// # Errors
/// A chart cannot be drawn.
pub fn render(report: &Report) -> Result<String, ReportError> {
    let lang = report.lang;
    let mut h = String::new();
    let tlp_class = report.tlp.replace('+', "-");
    let tlp_label = format!("TLP:{}", report.tlp.to_uppercase());
    let edition = if report.edition == "sector" {
        t(lang, "sector").to_string()
    } else {
        let name = report
            .catalog
            .actor(&report.edition)
            .map_or(report.edition.clone(), |a| a.name.clone());
        format!("{} {}", t(lang, "edition_of"), name)
    };
    let html_lang = match lang {
        Lang::Da => "da",
        Lang::En => "en",
    };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"{html_lang}\"><head><meta charset=\"utf-8\"><title>{} {}–{}</title><style>{STYLE}</style></head><body>",
        t(lang, "title"),
        report.from,
        report.to
    );
    let _ = write!(
        h,
        "<p><span class=\"tlp tlp-{tlp_class}\">{tlp_label}</span></p><h1>{}</h1><p>{} {} – {} ({}: {} – {}), {}</p>",
        t(lang, "title"),
        t(lang, "period"),
        report.from,
        report.to,
        t(lang, "previous"),
        report.previous_from,
        report.previous_to,
        escape(&edition)
    );
    summary(&mut h, report);
    attack(&mut h, report)?;
    by_process(&mut h, report)?;
    simple_table(&mut h, lang, "by_kind", "kind", &report.by_kind, |k| {
        kind_label(lang, k)
    });
    simple_table(&mut h, lang, "top_rules", "rule", &report.top_rules, escape);
    let _ = write!(
        h,
        "<h2>{}</h2><p>{}</p>",
        t(lang, "incidents_title"),
        t(lang, "incidents_def")
    );
    rows_table(&mut h, lang, "category", &report.totals[1..], |k| {
        t(lang, k).to_string()
    });
    time_to_detect(&mut h, report)?;
    coverage(&mut h, report);
    simple_table(&mut h, lang, "warnings", "category", &report.by_tlp, |k| {
        format!("TLP:{}", k.to_uppercase())
    });
    if let Some(own) = &report.own {
        let _ = write!(h, "<h2>{}</h2>", t(lang, "own"));
        rows_table(&mut h, lang, "category", own, |k| {
            match k.strip_prefix("process:") {
                Some(p) => process_name(report, p),
                None => t(lang, k).to_string(),
            }
        });
    }
    let _ = write!(
        h,
        "<h2>{}</h2><p><span class=\"tlp tlp-{tlp_class}\">{tlp_label}</span></p><p>{}</p><p>{}</p><p>{}</p><p class=\"note\">{} {}.</p>",
        t(lang, "method"),
        t(lang, "method_tlp"),
        t(lang, "method_levels"),
        t(lang, "incidents_def"),
        report.above_tlp,
        t(lang, "above"),
    );
    h.push_str("</body></html>\n");
    Ok(h)
}

fn process_name(report: &Report, id: &str) -> String {
    report
        .catalog
        .process(id)
        .map_or_else(|| escape(id), |p| escape(&p.name))
}

fn kind_label(lang: Lang, key: &str) -> String {
    let names: Vec<&str> = key.split('+').map(|k| t(lang, k)).collect();
    names.join(" + ")
}

fn summary(h: &mut String, report: &Report) {
    let lang = report.lang;
    let _ = write!(
        h,
        "<h2>{}</h2><p>{}</p><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, "summary"),
        t(lang, "summary_lead"),
        t(lang, "category"),
        t(lang, "now"),
        t(lang, "before"),
        t(lang, "change")
    );
    let name = |i: usize| match lang {
        Lang::Da => LEVELS[i].0,
        Lang::En => LEVELS[i].1,
    };
    for level in &report.levels {
        let category = if level.category == "overall" {
            t(lang, "overall").to_string()
        } else {
            process_name(report, &level.category)
        };
        let change = match (level.now, level.before) {
            (Some(a), Some(b)) if a > b => "↑",
            (Some(a), Some(b)) if a < b => "↓",
            (Some(_), Some(_)) => "→",
            _ => "",
        };
        let badge = |l: Option<usize>| {
            l.map_or_else(
                || "–".to_string(),
                |l| format!("<span class=\"lvl l{l}\">{}</span>", name(l)),
            )
        };
        let _ = write!(
            h,
            "<tr><td>{category}</td><td>{}</td><td>{}</td><td>{change}</td></tr>",
            badge(level.now),
            badge(level.before)
        );
    }
    h.push_str("</table>");
    rows_table(h, lang, "category", &report.totals, |k| {
        t(lang, k).to_string()
    });
    let _ = write!(
        h,
        "<p>{}: {}</p>",
        t(lang, "organisations_alerting"),
        cell(report.organisations_alerting)
    );
}

/// A table of rows with this period, the one before and the change.
fn rows_table(
    h: &mut String,
    lang: Lang,
    head: &str,
    rows: &[Row],
    label: impl Fn(&str) -> String,
) {
    let _ = write!(
        h,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, head),
        t(lang, "now"),
        t(lang, "before"),
        t(lang, "change")
    );
    let mut hidden = false;
    for row in rows {
        hidden |= row.now.0.is_none() || row.before.0.is_none();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            label(&row.key),
            cell(row.now),
            cell(row.before),
            arrow(row.now, row.before)
        );
    }
    h.push_str("</table>");
    if hidden {
        let _ = write!(h, "<p class=\"note\">{}</p>", t(lang, "hidden"));
    }
}

fn simple_table(
    h: &mut String,
    lang: Lang,
    title: &str,
    head: &str,
    rows: &[Row],
    label: impl Fn(&str) -> String,
) {
    let _ = write!(h, "<h2>{}</h2>", t(lang, title));
    rows_table(h, lang, head, rows, label);
}

/// A horizontal bar chart of this period and the one before; rows hidden
/// by the edition are left out.
fn bars(lang: Lang, rows: &[(String, Shown, Shown)]) -> Result<String, ReportError> {
    let shown: Vec<&(String, Shown, Shown)> = rows
        .iter()
        .filter(|(_, a, b)| a.0.is_some() && b.0.is_some())
        .collect();
    if shown.is_empty() {
        return Ok(String::new());
    }
    let value = |s: Shown| s.0.unwrap_or(0) as f32;
    let mut chart = HorizontalBarChart::new(
        vec![
            Series::new(
                t(lang, "before").to_string(),
                shown.iter().map(|r| value(r.2)).collect(),
            ),
            Series::new(
                t(lang, "now").to_string(),
                shown.iter().map(|r| value(r.1)).collect(),
            ),
        ],
        shown.iter().map(|r| r.0.clone()).collect(),
    );
    chart.width = 720.0;
    chart.height = 60.0 + 34.0 * shown.len() as f32;
    chart.series_label_formatter = String::new();
    chart.svg().map_err(|e| ReportError::Chart(e.to_string()))
}

fn attack(h: &mut String, report: &Report) -> Result<(), ReportError> {
    let lang = report.lang;
    let _ = write!(h, "<h2>{}</h2>", t(lang, "attack"));
    let name = |id: &str| {
        TACTICS
            .iter()
            .find(|(t, _, _)| *t == id)
            .map_or(id.to_string(), |(_, en, da)| match lang {
                Lang::Da => (*da).to_string(),
                Lang::En => (*en).to_string(),
            })
    };
    let ordered: Vec<&Row> = TACTICS
        .iter()
        .filter_map(|(id, _, _)| report.by_tactic.iter().find(|r| r.key == *id))
        .collect();
    let rows: Vec<(String, Shown, Shown)> = ordered
        .iter()
        .map(|r| (name(&r.key), r.now, r.before))
        .collect();
    h.push_str(&bars(lang, &rows)?);
    // The heatmap: each tactic's techniques, shaded by their detections.
    let max = report
        .by_technique
        .iter()
        .filter_map(|r| r.now.0)
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = write!(
        h,
        "<table class=\"heat\"><tr><th>{}</th><th>{}</th></tr>",
        t(lang, "tactic"),
        t(lang, "techniques")
    );
    for (id, _, _) in TACTICS {
        // A technique the edition hides is not named either.
        let techniques: Vec<&Row> = report
            .by_technique
            .iter()
            .filter(|r| r.now.0.is_some_and(|n| n > 0))
            .filter(|r| {
                report
                    .figures_now
                    .technique_tactics
                    .get(&r.key)
                    .is_some_and(|t| t.contains(id))
            })
            .collect();
        if techniques.is_empty() {
            continue;
        }
        let _ = write!(h, "<tr><td>{}</td><td>", name(id));
        for row in techniques {
            let shade = row.now.0.map_or(0.0, |n| n as f64 / max as f64);
            let alpha = 0.12 + 0.75 * shade;
            let _ = write!(
                h,
                "<span style=\"display:inline-block;margin:.1em;padding:.1em .4em;background:rgba(200,30,40,{alpha:.2})\">{} ({})</span>",
                escape(&row.key),
                cell(row.now)
            );
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table>");
    if report.by_technique.iter().any(|r| r.now.0.is_none()) {
        let _ = write!(h, "<p class=\"note\">{}</p>", t(lang, "hidden"));
    }
    Ok(())
}

fn by_process(h: &mut String, report: &Report) -> Result<(), ReportError> {
    let lang = report.lang;
    let _ = write!(h, "<h2>{}</h2>", t(lang, "by_process"));
    let rows: Vec<(String, Shown, Shown)> = report
        .by_process
        .iter()
        .map(|r| (process_name(report, &r.key), r.now, r.before))
        .collect();
    h.push_str(&bars(lang, &rows)?);
    rows_table(h, lang, "process", &report.by_process, |k| {
        process_name(report, k)
    });
    Ok(())
}

fn time_to_detect(h: &mut String, report: &Report) -> Result<(), ReportError> {
    let lang = report.lang;
    let _ = write!(
        h,
        "<h2>{}</h2><p>{}</p>",
        t(lang, "ttd"),
        t(lang, "ttd_lead")
    );
    let rows: Vec<(String, Shown, Shown)> = report
        .time_to_detect
        .iter()
        .map(|r| (r.key.clone(), r.now, r.before))
        .collect();
    h.push_str(&bars(lang, &rows)?);
    let seconds = |s: Option<f64>| s.map_or("–".to_string(), |s| format!("{s:.1} s"));
    let _ = write!(
        h,
        "<p>{}: {}; {}: {}</p>",
        t(lang, "median"),
        seconds(report.detect_median_seconds),
        t(lang, "p95"),
        seconds(report.detect_p95_seconds)
    );
    Ok(())
}

fn coverage(h: &mut String, report: &Report) {
    let lang = report.lang;
    let _ = write!(h, "<h2>{}</h2>", t(lang, "coverage"));
    let Some(coverage) = &report.coverage else {
        let _ = write!(h, "<p>{}</p>", t(lang, "coverage_none"));
        return;
    };
    let _ = write!(
        h,
        "<p>{}</p><table><tr><th></th><th>{}</th><th>{}</th></tr><tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr><tr><td>{}</td><td class=\"n\">{}</td><td></td></tr></table>",
        t(lang, "coverage_lead"),
        t(lang, "now"),
        t(lang, "before"),
        t(lang, "organisations_sending"),
        coverage.organisations_now,
        coverage.organisations_before,
        t(lang, "silent"),
        cell(Shown(coverage.silent_sources)),
    );
    if report.own.is_none() {
        return;
    }
    let _ = write!(
        h,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, "source"),
        t(lang, "now"),
        t(lang, "before")
    );
    for c in &coverage.own {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&c.source),
            c.now,
            c.before
        );
    }
    h.push_str("</table>");
    let _ = write!(h, "<h3>{}</h3>", t(lang, "silent"));
    if coverage.own_silent.is_empty() {
        let _ = write!(h, "<p>{}</p>", t(lang, "none"));
    } else {
        h.push_str("<ul>");
        for c in &coverage.own_silent {
            let _ = write!(h, "<li>{}</li>", escape(&c.source));
        }
        h.push_str("</ul>");
    }
}
