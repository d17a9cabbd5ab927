//! The vocabulary every layer shares and that imports nothing of ours:
//! device and user ids, the business calendar, the tag taxonomy, the request
//! OS, the media platforms and the limits they set.

pub mod calendar;
pub mod device_text;
pub mod field;
pub mod ids;
pub mod limits;
pub mod media;
pub mod os;
pub mod taxonomy;
