//! Harbor's cron schedules: six fields with seconds first
//! (`sec min hour day-of-month month day-of-week`), Sunday as 0 or 7.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::{Error, Result};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Cron(cron::Schedule);

const DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron> {
        let err = |reason: &str| Error::Cron {
            cron: expr.to_owned(),
            reason: reason.to_owned(),
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(err(
                "expected 6 fields: second minute hour day-of-month month day-of-week",
            ));
        }
        // The `cron` crate counts weekdays from Sunday = 1; Harbor (like
        // classic cron) from Sunday = 0. Names mean the same to both.
        let dow =
            weekday_names(fields[5]).ok_or_else(|| err("day-of-week must be 0-7 or SUN-SAT"))?;
        let normalised = format!(
            "{} {} {} {} {} {}",
            fields[0], fields[1], fields[2], fields[3], fields[4], dow
        );
        let schedule = cron::Schedule::from_str(&normalised).map_err(|e| err(&e.to_string()))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(err("it never fires"));
        }
        Ok(Cron(schedule))
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.after(&t).next()
    }
}

/// Rewrites the numbers of a day-of-week field (not step sizes) as names.
fn weekday_names(field: &str) -> Option<String> {
    let mut out = String::with_capacity(field.len());
    for (i, part) in field.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let mut first = true;
        for bound in range.split('-') {
            if !first {
                out.push('-');
            }
            first = false;
            match bound.parse::<usize>() {
                Ok(n) => out.push_str(DAYS.get(n)?),
                Err(_) => out.push_str(bound),
            }
        }
        if let Some(s) = step {
            out.push('/');
            out.push_str(s);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike};

    #[test]
    fn harbor_presets_parse_and_fire_when_expected() {
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 10, 30, 15).unwrap();
        let hourly = Cron::parse("0 0 * * * *").unwrap().next_after(t).unwrap();
        assert_eq!(
            (hourly.hour(), hourly.minute(), hourly.second()),
            (11, 0, 0)
        );
        let daily = Cron::parse("0 0 0 * * *").unwrap().next_after(t).unwrap();
        assert_eq!((daily.day(), daily.hour()), (5, 0));
        // Harbor's weekly preset: Sunday midnight, Sunday written as 0.
        let weekly = Cron::parse("0 0 0 * * 0").unwrap().next_after(t).unwrap();
        assert_eq!(weekly.weekday(), chrono::Weekday::Sun);
        assert_eq!(weekly.day(), 6);
        let weekdays = Cron::parse("0 0 9 * * 1-5").unwrap().next_after(t).unwrap();
        assert_eq!(weekdays.weekday(), chrono::Weekday::Mon);
        let every_ten = Cron::parse("*/10 * * * * *")
            .unwrap()
            .next_after(t)
            .unwrap();
        assert_eq!(every_ten.second(), 20);
    }

    #[test]
    fn bad_expressions_are_refused_with_the_reason() {
        for bad in [
            "",
            "* * * * *",
            "0 0 0 * * 9",
            "61 * * * * *",
            "a b c d e f",
            "0 0 0 31 2 *",
        ] {
            let e = Cron::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid cron expression"), "{bad}: {e}");
        }
    }
}
