//! What mdeliver tells people and MTAs, decided here so every driver says the same: the exit
//! status of a delivery or a command ([`exit`]), the RFC 3463 status of a failed delivery
//! ([`rfc3463`]) and the findings of a maildir health check ([`check`]).

pub mod check;
pub mod exit;
pub mod rfc3463;
