//! Every source of runtime facts of `c4route serve` (SPEC §8, §9): the
//! call records and the trunk and gateway counts. Nothing here knows HTTP.

pub mod calls;
pub mod decide;
