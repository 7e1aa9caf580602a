//! Schedules: days and hours in an IANA time zone, with excepted dates.
//!
//! An interval that crosses midnight (`"22:00-06:00"`) belongs to the day it
//! starts on: with `days = ["fri"]` it holds from Friday 22:00 to Saturday
//! 06:00. Excepted dates are local calendar dates of the moment being checked.

use std::time::SystemTime;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

/// A compiled schedule.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    tz: TimeZone,
    /// Bit `n` set: weekday `n` (Monday = 0) is in the schedule.
    days: u8,
    /// Minute-of-day intervals `[start, end)`; `start > end` crosses midnight.
    hours: Box<[(u16, u16)]>,
    except: Box<[Date]>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| s == *d || (s.len() > 3 && full_name(d).starts_with(&s)))
        .map(|i| i as u8)
}

fn full_name(d: &str) -> &'static str {
    match d {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

/// A schedule value that cannot be read; the message says what was expected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleError {
    #[error("invalid day {0:?}; expected a day like \"mon\" or a range like \"mon-fri\"")]
    Day(String),
    #[error(
        "invalid hours {0:?}; expected \"HH:MM-HH:MM\" in 24-hour local time, such as \"08:00-18:00\" or \"22:00-06:00\""
    )]
    Hours(String),
    #[error("hours {0:?} is an empty interval")]
    EmptyHours(String),
    #[error("invalid date {0:?}; expected YYYY-MM-DD")]
    Date(String),
    #[error("unknown time zone {0:?}; expected an IANA name like \"Europe/London\" or \"UTC\"")]
    TimeZone(String),
}

/// Parses `"mon-fri"` or `"sun"` into a day bit mask (ranges may wrap: `"fri-mon"`).
pub(crate) fn parse_days(s: &str) -> Result<u8, ScheduleError> {
    let err = || ScheduleError::Day(s.to_owned());
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (day_index(a).ok_or_else(err)?, day_index(b).ok_or_else(err)?);
            let mut mask = 0u8;
            let mut d = a;
            loop {
                mask |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            Ok(mask)
        }
        None => Ok(1 << day_index(s).ok_or_else(err)?),
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if (h < 24 && m < 60) || (h == 24 && m == 0) {
        Some(h * 60 + m)
    } else {
        None
    }
}

/// Parses `"08:00-12:30"` into minutes `[start, end)`.
pub(crate) fn parse_hours(s: &str) -> Result<(u16, u16), ScheduleError> {
    let err = || ScheduleError::Hours(s.to_owned());
    let (a, b) = s.split_once('-').ok_or_else(err)?;
    let (a, b) = (
        parse_hhmm(a).ok_or_else(err)?,
        parse_hhmm(b).ok_or_else(err)?,
    );
    if a == b || a == 24 * 60 {
        return Err(ScheduleError::EmptyHours(s.to_owned()));
    }
    Ok((a, b))
}

/// Parses `"2026-12-25"`.
pub(crate) fn parse_date(s: &str) -> Result<Date, ScheduleError> {
    s.trim()
        .parse::<Date>()
        .map_err(|_| ScheduleError::Date(s.to_owned()))
}

/// Looks up an IANA time zone name (the database is built in).
pub(crate) fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))
}

fn weekday_index(w: Weekday) -> u8 {
    w.to_monday_zero_offset() as u8
}

impl Schedule {
    pub(crate) fn new(tz: TimeZone, days: u8, hours: Vec<(u16, u16)>, except: Vec<Date>) -> Self {
        Schedule {
            tz,
            days: if days == 0 { 0x7f } else { days },
            hours: if hours.is_empty() {
                vec![(0, 24 * 60)].into()
            } else {
                hours.into()
            },
            except: except.into(),
        }
    }

    /// Whether the schedule holds at `now`.
    pub(crate) fn is_active(&self, now: SystemTime) -> bool {
        let Ok(ts) = jiff::Timestamp::try_from(now) else {
            return false;
        };
        let local = ts.to_zoned(self.tz.clone());
        let date = local.date();
        if self.except.contains(&date) {
            return false;
        }
        let day = weekday_index(local.weekday());
        let prev = (day + 6) % 7;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let on = |d: u8| self.days & (1 << d) != 0;
        self.hours.iter().any(|&(start, end)| {
            if start < end {
                on(day) && minute >= start && minute < end
            } else {
                (on(day) && minute >= start) || (on(prev) && minute < end)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        SystemTime::from(s.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn office_hours_in_london_follow_dst() {
        let s = Schedule::new(
            time_zone("Europe/London").unwrap(),
            parse_days("mon-fri").unwrap(),
            vec![
                parse_hours("08:00-12:30").unwrap(),
                parse_hours("13:30-18:00").unwrap(),
            ],
            vec![parse_date("2026-12-25").unwrap()],
        );
        // Winter: London = UTC.
        assert!(s.is_active(at("2026-11-30T08:00:00Z")));
        assert!(!s.is_active(at("2026-11-30T07:59:59Z")));
        assert!(!s.is_active(at("2026-11-30T12:45:00Z")));
        assert!(!s.is_active(at("2026-11-28T10:00:00Z"))); // Saturday
        assert!(!s.is_active(at("2026-12-25T10:00:00Z"))); // excepted
        // Summer: London = UTC+1, so 07:30Z is 08:30 local.
        assert!(s.is_active(at("2026-07-01T07:30:00Z")));
        assert!(!s.is_active(at("2026-07-01T17:30:00Z")));
    }

    #[test]
    fn night_interval_belongs_to_its_start_day() {
        let s = Schedule::new(
            time_zone("UTC").unwrap(),
            parse_days("fri").unwrap(),
            vec![parse_hours("22:00-06:00").unwrap()],
            vec![],
        );
        assert!(s.is_active(at("2026-11-27T23:00:00Z"))); // Friday
        assert!(s.is_active(at("2026-11-28T05:59:00Z"))); // Saturday morning
        assert!(!s.is_active(at("2026-11-28T23:00:00Z"))); // Saturday night
        assert!(!s.is_active(at("2026-11-27T05:00:00Z"))); // Friday morning
    }

    #[test]
    fn parsing_errors() {
        assert_eq!(parse_days("fri-mon").unwrap(), 0b111_0001);
        assert_eq!(parse_days("Monday").unwrap(), 1);
        assert!(parse_days("mon-xyz").is_err());
        assert!(parse_hours("8:00-9:00").is_err());
        assert!(parse_hours("08:00-08:00").is_err());
        assert_eq!(parse_hours("00:00-24:00").unwrap(), (0, 1440));
        assert!(parse_hours("25:00-26:00").is_err());
        assert!(parse_date("2026-13-01").is_err());
        assert!(time_zone("Mars/Olympus").is_err());
    }
}
