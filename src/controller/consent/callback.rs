//! The consent redirect's stamp: the endpoint itself (`/consent/callback`) is served on the
//! public listener by [`crate::http::public`].

use super::*;

/// How often the redirect can have a grant re-checked: the endpoint needs no credential
/// (Entra's redirect carries none), and its `state` is no secret, so repeated hits within
/// one window write the same annotation value — a write that changes nothing and wakes
/// nothing.
pub(super) const CALLBACK_WINDOW_SECS: i64 = 10;

/// The recheck annotation the redirect writes at `now`: the start of its window.
pub fn recheck_stamp(now: Timestamp) -> String {
    let second = now.as_second();
    Timestamp::from_second(second - second.rem_euclid(CALLBACK_WINDOW_SECS))
        .unwrap_or(now)
        .to_string()
}
