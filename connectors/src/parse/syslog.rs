//! Syslog: RFC 5424 (`<165>1 2026-11-23T09:10:29.003Z host app 42 ID47
//! [origin ip="10.1.2.3"] message`) and the BSD format of RFC 3164
//! (`<34>Nov 23 09:10:29 host sshd[42]: message`), told apart by the
//! version number after the priority.
//!
//! Lines without `<PRI>` that start with a time are read as RFC 3164 (the
//! files syslog daemons write); they have no priority columns.
//!
//! Both give the same columns: `priority`, `facility`, `severity` (numbers)
//! and `facility_name`, `severity_name`, `timestamp`, `hostname`,
//! `app_name`, `procid`, `message`; RFC 5424 adds `version`, `msgid` and
//! its structured data as `sd.<SD-ID>.<PARAM-NAME>`. A field that is the
//! NILVALUE `-` is left out. An RFC 3164 time has no year or zone: it is
//! taken as UTC in the current year (the previous one if that would put it
//! more than a day in the future) and written as RFC 3339.

use chrono::{Datelike, Utc};

use super::object::Object;

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Parses one syslog message. A message without `<PRI>` is read as the
/// BSD format when it starts with a time, as syslog daemons write their
/// files (`Nov 23 09:10:29 host sshd[42]: ...`).
pub(super) fn parse(line: &str) -> Result<Object, String> {
    let mut object = Object::default();
    if !line.starts_with('<') {
        if bsd_time(line).0.is_none() {
            return Err(NO_PRI.into());
        }
        rfc3164(line, &mut object);
        return Ok(object);
    }
    let rest = priority(line, &mut object)?;
    let version_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=2).contains(&version_len) && rest[version_len..].starts_with(' ') {
        rfc5424(&rest[version_len + 1..], &rest[..version_len], &mut object)?;
    } else {
        rfc3164(rest, &mut object);
    }
    Ok(object)
}

const NO_PRI: &str = "syslog: the message starts with neither <PRI> nor a time";

/// Reads `<PRI>` into the object; returns what follows.
fn priority<'a>(line: &'a str, object: &mut Object) -> Result<&'a str, String> {
    let body = line.strip_prefix('<').ok_or(NO_PRI)?;
    let close = body
        .find('>')
        .filter(|&i| (1..=3).contains(&i))
        .ok_or("syslog: <PRI> is not closed by '>' after 1 to 3 digits")?;
    let value: u8 = body[..close]
        .parse()
        .ok()
        .filter(|&p| p <= 191)
        .ok_or_else(|| {
            format!(
                "syslog: priority '{}' is not a number from 0 to 191",
                &body[..close]
            )
        })?;
    object.insert_int("priority", i64::from(value));
    object.insert_int("facility", i64::from(value / 8));
    object.insert_int("severity", i64::from(value % 8));
    object.insert_str("facility_name", FACILITIES[usize::from(value / 8)]);
    object.insert_str("severity_name", SEVERITIES[usize::from(value % 8)]);
    Ok(&body[close + 1..])
}

/// The RFC 5424 header after the version, structured data and message.
fn rfc5424(rest: &str, version: &str, object: &mut Object) -> Result<(), String> {
    object.insert_typed("version", version);
    let mut rest = rest;
    for name in ["timestamp", "hostname", "app_name", "procid", "msgid"] {
        let end = rest
            .find(' ')
            .ok_or_else(|| format!("syslog: RFC 5424 header ends before the field after {name}"))?;
        let value = &rest[..end];
        if value.is_empty() {
            return Err(format!("syslog: RFC 5424 {name} is empty (two spaces)"));
        }
        // RFC 5424 6.2.3: a full date and time (RFC 3339) or '-'.
        if name == "timestamp"
            && value != "-"
            && chrono::DateTime::parse_from_rfc3339(value).is_err()
        {
            return Err(format!(
                "syslog: RFC 5424 timestamp '{value}' is not a valid date and time"
            ));
        }
        if value != "-" {
            object.insert_str(name, value);
        }
        rest = &rest[end + 1..];
    }
    let rest = if let Some(after) = rest.strip_prefix('-') {
        after
    } else if rest.starts_with('[') {
        structured_data(rest, object)?
    } else {
        return Err("syslog: RFC 5424 structured data is neither '-' nor '[...]'".into());
    };
    if let Some(message) = rest.strip_prefix(' ') {
        object.insert_str("message", message.trim_start_matches('\u{feff}'));
    } else if !rest.is_empty() {
        return Err("syslog: RFC 5424 structured data is not followed by a space".into());
    }
    Ok(())
}

/// Reads `[id name="value" ...]...` into `sd`; returns what follows.
fn structured_data<'a>(mut rest: &'a str, object: &mut Object) -> Result<&'a str, String> {
    let mut sd = Object::default();
    while let Some(element) = rest.strip_prefix('[') {
        let id_end = element
            .find([' ', ']'])
            .ok_or("syslog: structured data element is not closed by ']'")?;
        let id = &element[..id_end];
        if id.is_empty() {
            return Err("syslog: structured data element without an SD-ID".into());
        }
        let mut params = Object::default();
        let mut body = &element[id_end..];
        loop {
            if let Some(after) = body.strip_prefix(']') {
                body = after;
                break;
            }
            let param = body.strip_prefix(' ').ok_or_else(|| {
                format!("syslog: structured data [{id}]: expected a space or ']'")
            })?;
            let eq = param
                .find(['=', ' ', ']'])
                .filter(|&eq| eq > 0 && param[eq..].starts_with("=\""))
                .ok_or_else(|| {
                    format!("syslog: structured data [{id}]: a parameter is not NAME=\"VALUE\"")
                })?;
            let name = &param[..eq];
            let (value, used) = sd_value(&param[eq + 2..]).ok_or_else(|| {
                format!("syslog: structured data [{id}] {name}: the value's quote is not closed")
            })?;
            params.insert_str(name, &value);
            body = &param[eq + 2 + used..];
        }
        sd.insert_object(id, params);
        rest = body;
    }
    object.insert_object("sd", sd);
    Ok(rest)
}

/// A PARAM-VALUE after its opening quote: the unescaped value and the bytes
/// used, closing quote included. Only `"`, `\` and `]` are escaped (RFC
/// 5424, 6.3.3); another backslash stays.
fn sd_value(text: &str) -> Option<(String, usize)> {
    super::quoted(text, |c, value| {
        if !matches!(c, '"' | '\\' | ']') {
            value.push('\\');
        }
        value.push(c);
    })
}

/// The BSD format: an optional time, host name and tag, then the message.
fn rfc3164(rest: &str, object: &mut Object) {
    let (time, mut rest) = bsd_time(rest);
    if let Some(time) = time {
        object.insert_str("timestamp", &time);
        // The host name follows the time unless the next word is the tag.
        if let Some(word_end) = rest.find(' ') {
            let word = &rest[..word_end];
            if !word.ends_with(':') && !word.contains('[') {
                object.insert_str("hostname", word);
                rest = &rest[word_end + 1..];
            }
        } else if !rest.is_empty() && !rest.ends_with(':') {
            object.insert_str("hostname", rest);
            rest = "";
        }
    }
    let tag_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        .unwrap_or(rest.len());
    let after_tag = &rest[tag_end..];
    let (procid, after) = match after_tag.strip_prefix('[').and_then(|a| a.split_once(']')) {
        Some((pid, after)) => (Some(pid), after),
        None => (None, after_tag),
    };
    match after.strip_prefix(':') {
        Some(message) if tag_end > 0 => {
            object.insert_str("app_name", &rest[..tag_end]);
            if let Some(pid) = procid {
                object.insert_str("procid", pid);
            }
            object.insert_str("message", message.strip_prefix(' ').unwrap_or(message));
        }
        _ => object.insert_str("message", rest),
    }
}

/// `Mmm dd hh:mm:ss` (the day padded with a space or a zero): month, day,
/// and the time of day.
fn bsd_stamp(stamp: &str) -> Option<(u32, u32, [u32; 3])> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = stamp.as_bytes();
    if b.len() != 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == &stamp[..3])? as u32 + 1;
    let number = |text: &str| -> Option<u32> {
        let text = text.trim_start();
        (!text.is_empty() && text.bytes().all(|c| c.is_ascii_digit())).then(|| text.parse().ok())?
    };
    let day = number(&stamp[4..6])?;
    Some((
        month,
        day,
        [
            number(&stamp[7..9])?,
            number(&stamp[10..12])?,
            number(&stamp[13..15])?,
        ],
    ))
}

/// An RFC 3164 time (`Nov 23 09:10:29`, day padded with a space) or an
/// RFC 3339 one, and what follows it.
fn bsd_time(rest: &str) -> (Option<String>, &str) {
    if let Some((month, day, [h, m, sec])) = rest.get(..15).and_then(bsd_stamp) {
        let now = Utc::now().naive_utc();
        for year in [now.year(), now.year() - 1] {
            let time = chrono::NaiveDate::from_ymd_opt(year, month, day)
                .and_then(|d| d.and_hms_opt(h, m, sec));
            if let Some(time) = time.filter(|t| *t <= now + chrono::Duration::days(1)) {
                let after = &rest[15..];
                return (
                    Some(time.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    after.strip_prefix(' ').unwrap_or(after),
                );
            }
        }
    }
    let word_end = rest.find(' ').unwrap_or(rest.len());
    let word = &rest[..word_end];
    if chrono::DateTime::parse_from_rfc3339(word).is_ok() {
        return (
            Some(word.to_string()),
            rest[word_end..].trim_start_matches(' '),
        );
    }
    (None, rest)
}
